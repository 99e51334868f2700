"""OUT/gpu.md from device_run.sh's own output (OUT/machine.txt, OUT/checks.jsonl): the page
docs/gpu.md is copied from. Nothing here is typed in by hand: every number comes from those files.
  write_gpu_md.py OUT_DIR"""
import json
import os
import sys


def main():
    out = sys.argv[1]
    machine = open(os.path.join(out, "machine.txt")).read().strip().splitlines()
    checks = [json.loads(l) for l in open(os.path.join(out, "checks.jsonl")) if l.strip()]
    rehearsal = any(l.startswith("device cpu") for l in machine)
    L = []
    L.append("# sink-run on a GPU: the device kit's results\n")
    if rehearsal:
        L.append("**A rehearsal with `--device cpu`: every check below ran on the CPU, against the CPU. "
                 "These are not GPU numbers.**\n")
    L.append("Written by `tools/bench/gpu/write_gpu_md.py` from the output of `tools/bench/gpu/device_run.sh` "
             "(checks.jsonl, machine.txt).\n")
    L.append("## Machine\n")
    L += ["    " + l for l in machine]
    L.append("")
    L.append("## Checks\n")
    L.append("| # | check | status | seconds | result |")
    L.append("|---|---|---|---|---|")
    for c in checks:
        d = c["detail"]
        if "worst_rel" in d:
            res = (f"{d['n'] - d['failed']}/{d['n']} datasets within rtol={d['rtol']:g} atol={d['atol']:g}, "
                   f"{d['identical']} bit-identical, worst relative difference {d['worst_rel']:.2e}")
            if d.get("devices"):
                res += f"; devices {d['devices']}"
            if d.get("killed_after_documents") is not None:
                res += f"; killed after {d['killed_after_documents']} documents"
        elif "wall_s" in d:
            res = (f"{d.get('documents', '?')} documents, {d.get('s_per_document', '?')} s per document "
                   f"(observation + 4 SSP modes), {d.get('tokens_per_s', '?')} tok/s over the run, "
                   f"peak GPU memory {d.get('peak_gpu_mib', 'n/a')} MiB (nvidia-smi), wall {d['wall_s']} s")
        elif "summary" in d:
            res = d["summary"]
        else:
            res = ""
        L.append(f"| {c['check']} | {c['name']} | {c['status']} | {c['seconds']} | {res} |")
    L.append("")
    c4 = [c for c in checks if c["check"] == 4 and c["detail"].get("passes")]
    if c4:
        L.append("## Check 4: each pass on its own (sink-bench, same shape, length and dtype)\n")
        L.append("| pass | time | tokens/s |")
        L.append("|---|---|---|")
        for name, p in c4[0]["detail"]["passes"].items():
            L.append(f"| {name} | {p['s']} s | {p['tok_s']:,} |")
        L.append("")
    notes = [c["detail"]["model"] for c in checks if c["check"] == 1 and c["detail"].get("model")]
    if notes:
        L.append(f"Checks 1, 2, 3 and 5 ran {notes[0]}.\n")
    open(os.path.join(out, "gpu.md"), "w").write("\n".join(L))


if __name__ == "__main__":
    main()
