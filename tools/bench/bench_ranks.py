#!/usr/bin/env python3
"""Documents per second of sink-run with 1 and 2 ranks on this machine, on the
same config (observation + SSP), measured in one run; prints the speed-up.

    .venv/bin/python tools/bench/bench_ranks.py [--config configs/demo.yaml] [--docs 8]
"""
import argparse
import os
import shutil
import subprocess
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--docs", type=int, default=8)
    ap.add_argument("--ranks", default="1,2")
    a = ap.parse_args()
    results = {}
    for n in [int(x) for x in a.ranks.split(",")]:
        out = tempfile.mkdtemp(prefix=f"bench_ranks_{n}_")
        cmd = ["build/release/sink-run", a.config, "--set", f"out={out}", "--set", f"max_docs={a.docs}",
               "--no-progress", "--bucket-size", "1", "--threads", str(max(1, os.cpu_count() // n))]
        if n > 1:
            cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", str(n)] + cmd
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        dt = time.perf_counter() - t0
        results[n] = a.docs / dt
        print(f"{n} rank(s): {a.docs} documents in {dt:.1f} s = {results[n]:.3f} docs/s "
              f"(threads per rank {max(1, os.cpu_count() // n)})")
        shutil.rmtree(out, ignore_errors=True)
    base = results[min(results)]
    for n, r in sorted(results.items()):
        print(f"  {n} rank(s): {r / base:.2f}x the 1-rank throughput")


if __name__ == "__main__":
    main()
