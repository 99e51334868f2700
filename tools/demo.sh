#!/usr/bin/env bash
# The demo on shipped data (run by `bash tools/setup.sh demo` after the build):
# observation and Static Sink Patching on SmolLM2-135M-Instruct over 16 State
# of the Union addresses, then the plots. A few minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/detect_gpu.sh
BIN=$(sink_pick_bin)  # build/cuda/sink-run on a GPU machine, else build/release/sink-run
OUT=experiments/demo
DEV=()
[ "$BIN" = build/release/sink-run ] || DEV=(--set device_map=auto)  # the config names the CPU
echo "== $BIN configs/demo.yaml ${DEV[*]}"
"$BIN" configs/demo.yaml "${DEV[@]}" "$@"
echo "== plots"
.venv/bin/python tools/plot_results.py "$OUT/results.h5" --out "$OUT/plots"
echo "== report"
.venv/bin/python tools/report.py "$OUT/results.h5" --out "$OUT"
.venv/bin/python - "$OUT/results.h5" <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1])
for name in f.attrs["runs"].split(","):
    g = f[name]
    print(f"\n{name}: {g.attrs['n_docs']} documents, sink policy {g.attrs['sink_policy']}")
    sm = g['summary'].attrs
    print(f"  sink rate (alpha > {sm['epsilon']}): {sm['sink_rate']:.2f} of (layer, head); "
          f"Gu et al.'s protocol: {sm['sink_rate_gu']:.2f}")
    if "ssp" in g:
        o = g["ssp/original"].attrs["ppl"]
        print(f"  perplexity original {o:.2f}")
        for m in ("ssp_bias", "ssp_drop", "zero", "random"):
            if m in g["ssp"]:
                a = g["ssp/" + m].attrs
                print(f"  {m:9s} ppl {a['ppl']:.2f}  ratio {a['ppl_ratio']:.4f}  95% CI [{a['ppl_ratio_ci95_low']:.4f}, {a['ppl_ratio_ci95_high']:.4f}]")
PY
echo
echo "results: $OUT/results.h5"
echo "plots:   $OUT/plots/index.html"
echo "report:  $OUT/report.md, $OUT/report.html"
