#!/usr/bin/env bash
# docs/findings.md from the real models on this machine: the sweep in
# configs/findings/small_models.yaml (SmolLM2-135M-Instruct and stories260K on 16 shipped
# State of the Union documents, SSP with μ from 8 Austen chapters), its report, and the
# findings page made from that report. 41 minutes on 2 CPU cores shared with other jobs (measured).
#   bash tools/findings.sh            # run, report, write docs/findings.md
#   bash tools/findings.sh --resume   # finish an interrupted run first
#   bash tools/findings.sh window     # only docs/findings.md's windowed-attention section
#                                     # (configs/findings/window_eval.yaml; --resume may follow)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SINK_BIN:-build/release}
if [ "${1:-}" = window ]; then
  # SmolLM2 and Gemma 3 as two configs: each results.h5 is complete on its own. WINDOW_MODELS=smollm2
  # runs (and tabulates) the first alone.
  shift
  FILES=()
  for c in window_eval window_eval_gemma3; do
    [ "$c" = window_eval_gemma3 ] && [ "${WINDOW_MODELS:-all}" = smollm2 ] && continue
    OUT=experiments/findings/$c
    "$BIN/sink-run" configs/findings/$c.yaml --no-progress "$@"
    .venv/bin/python tools/report.py "$OUT/results.h5"
    FILES+=("$OUT/results.h5")
  done
  .venv/bin/python tools/findings.py "${FILES[@]}" --window --out docs/findings.md
  echo "docs/findings.md, windowed-attention section (from ${FILES[*]})"
  exit 0
fi
OUT=experiments/findings/small_models
"$BIN/sink-run" configs/findings/small_models.yaml --no-progress "$@"
.venv/bin/python tools/report.py "$OUT/results.h5"
.venv/bin/python tools/findings.py "$OUT/results.h5" --out docs/findings.md
echo "docs/findings.md (from $OUT/report.md)"
