#!/usr/bin/env python3
"""Pipeline stages against independent ranks on the same cores (issue 18): documents per
second of sink-run with 2 ranks as one pipeline of 2 stages, and with 2 ranks each holding the
whole model (the baseline), on the same config, measured in one sitting; prints the ratio and
what crossed the wire per document (the transport's own byte counts).

    .venv/bin/python tools/bench/bench_stages.py [--model models/smollm2-135m-instruct.Q4_1.gguf] [--docs 8]

Both layouts use --threads T each (default: cores / 2), so the two runs use the same cores.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "run"))
from run_util import make_eval, write_config  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/smollm2-135m-instruct.Q4_1.gguf")
    ap.add_argument("--docs", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=256, help="max_total_tokens")
    ap.add_argument("--modes", default="zero", help="SSP modes ('' for observation only)")
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--repeat", type=int, default=2, help="alternating repetitions of both layouts")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_stages_")
    import pathlib
    ev = make_eval(pathlib.Path(tmp) / "eval.jsonl", n=a.docs, chars=6 * a.tokens)
    kw = dict(model=a.model, eval_jsonl=ev, max_total_tokens=a.tokens, max_tokens_to_calc=a.tokens,
              layers_to_show=[0])
    modes = [m for m in a.modes.split(",") if m]
    if modes:
        kw["intervention"] = {"modes": modes, "seed": 1}  # μ = 0 without calibration: the passes are what counts
    times = {"ranks": [], "stages": []}
    wire = {}
    for rep in range(a.repeat):
        for layout in ("ranks", "stages"):
            out = os.path.join(tmp, f"out_{layout}_{rep}")
            cfg = write_config(os.path.join(tmp, f"{layout}_{rep}.yaml"), out=out, stages=2 if layout == "stages" else 1,
                               **kw)
            stats = os.path.join(tmp, f"wire_{layout}_{rep}.jsonl")
            env = dict(os.environ, SINK_TRANSPORT_STATS=stats)
            cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "2", "build/release/sink-run", cfg,
                   "--no-progress", "--bucket-size", "1", "--threads", str(a.threads)]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            times[layout].append(time.perf_counter() - t0)
            if layout == "stages" and os.path.exists(stats):
                wire = [json.loads(l) for l in open(stats)]
            shutil.rmtree(out, ignore_errors=True)
    best = {k: min(v) for k, v in times.items()}
    print(f"{a.model}: {a.docs} documents of up to {a.tokens} tokens, modes {modes or 'none'}, "
          f"--threads {a.threads} per rank, 2 ranks, best of {a.repeat}")
    for k, label in (("ranks", "2 independent ranks (whole model each)"), ("stages", "1 pipeline of 2 stages")):
        print(f"  {label}: {best[k]:.2f} s = {a.docs / best[k]:.3f} docs/s  (all: {', '.join(f'{t:.2f}' for t in times[k])})")
    print(f"  stages / ranks throughput: {best['ranks'] / best['stages']:.2f}x")
    for w in wire:
        print(f"  stage {w['stage']} sent {w['bytes_sent'] / a.docs / 1024:.1f} KiB per document "
              f"({w['hidden_bytes'] / a.docs / 1024:.1f} KiB hidden states, over {w['transport']})")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
