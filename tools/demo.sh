#!/usr/bin/env bash
# The demo on shipped data (run by `bash tools/setup.sh demo` after the build):
# observation and Static Sink Patching on SmolLM2-135M-Instruct over 16 State
# of the Union addresses, then the plots. A few minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/release
OUT=experiments/demo
echo "== sink-run configs/demo.yaml"
"$BIN/sink-run" configs/demo.yaml "$@"
echo "== plots"
.venv/bin/python tools/plot_results.py "$OUT/results.h5" --out "$OUT/plots"
echo "== summary (sink-run printed it too; sink-summary reads it from any results.h5)"
"$BIN/sink-summary" "$OUT/results.h5"
echo
echo "results: $OUT/results.h5"
echo "plots:   $OUT/plots/index.html"
