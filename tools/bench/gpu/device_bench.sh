#!/usr/bin/env bash
# One run on a GPU machine (PyTorch + CUDA + a compiler; our Debian libraries carried as
# .debs in .deps/ by fetch_debs.sh): build sink-bench against that PyTorch, measure the
# card's bf16 matrix-product rate, then a Llama-2-7B-shaped random-weight model in bf16 at
# T = 3500: ours (plain, observation, SSP) and HF (sdpa; eager + outputs; + statistics);
# last, what each observation step costs alone (ours only).
#   tools/bench/gpu/device_bench.sh OUT_DIR [LENGTHS]
set -uo pipefail
cd "$(dirname "$0")/../../.."
OUT=${1:?OUT_DIR}; LENGTHS=${2:-3500}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' | tee -a "$OUT/gpu.txt"
mkdir -p /tmp/deps && for f in .deps/*.deb; do dpkg -x "$f" /tmp/deps; done
t0=$(date +%s)
tools/bench/gpu/build_sink_bench.sh /tmp/deps /tmp/sb > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
# The card's bf16 matrix-product rate, the denominator of 'fraction of peak'.
python3 - <<'PY' | tee "$OUT/matmul.txt"
import torch, time
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(3): a @ b
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(10): a @ b
torch.cuda.synchronize(); dt = (time.perf_counter() - t) / 10
print(f"bf16 8192^3 matmul: {2 * 8192**3 / dt / 1e12:.0f} TFLOP/s")
PY
# The fused CUDA statistics/SSP paths against the explicit chunked attention on this GPU:
# float32 (differences from summation order only) and the bfloat16 model benchmarked below.
/tmp/sb/sink-bench --random-weights data/model_specs/tinyllama_1_1b/config.json --lengths 600,2048 --dtype float32 \
  --device cuda --check-fused 2>&1 | tee "$OUT/check_f32.txt"
/tmp/sb/sink-bench --random-weights data/model_specs/llama2_7b_hf/config.json --lengths 3500 --dtype bfloat16 \
  --device cuda --check-fused 2>&1 | tee "$OUT/check_bf16.txt"
/tmp/sb/sink-bench --random-weights data/model_specs/llama2_7b_hf/config.json --lengths "$LENGTHS" --dtype bfloat16 \
  --device cuda --reps 3 --python python3 2>&1 | tee "$OUT/bench.txt"
# If our run broke before HF's turn, HF's numbers alone, for the record.
if ! grep -q 'HF plain forward' "$OUT/bench.txt"; then
  for mode in sdpa eager_outputs eager_job; do
    python3 tools/bench/hf_bench.py --random-weights --model data/model_specs/llama2_7b_hf/config.json --T "${LENGTHS%%,*}" \
      --threads 1 --dtype bfloat16 --device cuda --reps 3 --mode "$mode" 2>/dev/null | sed "s/^/HF $mode: /" | tee -a "$OUT/bench.txt"
  done
fi
# Each observation step alone, ours only: where the observation's cost over plain lies.
for step in basic norms values viz; do
  /tmp/sb/sink-bench --random-weights data/model_specs/llama2_7b_hf/config.json --lengths "${LENGTHS%%,*}" \
    --dtype bfloat16 --device cuda --reps 3 --no-hf --steps "$step" 2>&1 | grep -E 'plain forward|observation \(' |
    sed "s/^/step $step: /" | tee -a "$OUT/steps.txt"
done
