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
echo "== summary (sink-run printed it too; sink-summary reads it from any results.h5)"
"$(dirname "$BIN")/sink-summary" "$OUT/results.h5"
echo
echo "results: $OUT/results.h5"
echo "plots:   $OUT/plots/index.html"
echo "report:  $OUT/report.md, $OUT/report.html"
