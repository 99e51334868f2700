#!/usr/bin/env bash
# docs/findings.md from the real models on this machine: the runs in configs/findings/
# (small_models.yaml: SmolLM2-135M-Instruct and stories260K on 16 shipped State of the Union
# documents cut at 256 tokens; gemma3_270m.yaml: Gemma 3 270M on 16 longer ones cut at 1024, past
# its sliding window of 512), SSP with μ from 8 Austen chapters, their reports, and the findings
# page made from those reports. About an hour on 2 CPU cores shared with other jobs.
#   bash tools/findings.sh            # run, report, write docs/findings.md
#   bash tools/findings.sh --resume   # finish interrupted runs first (a finished one is a no-op)
#   bash tools/findings.sh window     # only docs/findings.md's windowed-attention section
#                                     # (configs/findings/window_eval*.yaml; --resume may follow)
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
RESULTS=()
for c in small_models gemma3_270m; do
  OUT=experiments/findings/$c
  "$BIN/sink-run" configs/findings/$c.yaml --no-progress "$@"
  .venv/bin/python tools/report.py "$OUT/results.h5"
  RESULTS+=("$OUT/results.h5")
done
.venv/bin/python tools/findings.py "${RESULTS[@]}" --out docs/findings.md
echo "docs/findings.md (from ${RESULTS[*]/%results.h5/report.md})"
