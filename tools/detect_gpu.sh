#!/usr/bin/env bash
# Which build this machine wants, and which sink-run to launch. Sourced by tools/setup.sh,
# tools/demo.sh and slurm/lib.sh; run by hand:
#
#   bash tools/detect_gpu.sh          prints cuda or cpu (the build for this machine); why, on stderr
#   bash tools/detect_gpu.sh bin      prints the sink-run to launch here (relative to the current directory)
#
# A GPU is there when the NVIDIA driver answers: `nvidia-smi -L` lists one (under Slurm, the
# job's GPUs only), or, without nvidia-smi, the .venv's torch sees one. SINK_BUILD=cpu|cuda decides instead of the probe (default auto);
# SINK_BIN names the binary instead of the choice.

# sink_gpu_answers: exit 0 when the driver lists a GPU; prints its first line. Without
# nvidia-smi (some containers), the repository's torch is asked instead.
sink_gpu_answers() {
  local gpus py=${SINK_PYTHON:-.venv/bin/python}
  if command -v nvidia-smi >/dev/null 2>&1; then
    gpus=$(nvidia-smi -L 2>/dev/null) || return 1
    grep -m1 '^GPU ' <<<"$gpus"
  elif [ -x "$py" ]; then
    "$py" -c 'import sys, torch
ok = torch.cuda.is_available()
ok and print("torch sees", torch.cuda.get_device_name(0))
sys.exit(0 if ok else 1)' 2>/dev/null
  else
    return 1
  fi
}

# sink_detect_build: prints cuda or cpu; a line on stderr says why; exit 2 on a bad SINK_BUILD.
sink_detect_build() {
  local gpu
  case "${SINK_BUILD:-auto}" in
    cpu | cuda)
      echo "detect_gpu: SINK_BUILD=$SINK_BUILD" >&2
      echo "$SINK_BUILD" ;;
    auto)
      if gpu=$(sink_gpu_answers); then
        echo "detect_gpu: the NVIDIA driver answers ($gpu): the CUDA build (SINK_BUILD=cpu for the CPU one)" >&2
        echo cuda
      else
        echo "detect_gpu: no NVIDIA GPU answers (nvidia-smi -L, torch): the CPU build (SINK_BUILD=cuda for the CUDA one)" >&2
        echo cpu
      fi ;;
    *)
      echo "detect_gpu: SINK_BUILD must be auto, cpu or cuda, not '${SINK_BUILD}'" >&2
      return 2 ;;
  esac
}

# sink_cuda_arch: the compute capability of the first GPU that answers ("9.0"), for TORCH_CUDA_ARCH_LIST.
sink_cuda_arch() {
  nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' '
}

# sink_pick_bin: the sink-run to launch from the current directory. $SINK_BIN if set; else
# build/cuda/sink-run when it is built and a GPU answers here (or it is the only build); else
# build/release/sink-run (which need not exist: the caller says so).
sink_pick_bin() {
  if [ -n "${SINK_BIN:-}" ]; then
    printf '%s\n' "$SINK_BIN"
  elif [ -x build/cuda/sink-run ] && { [ ! -x build/release/sink-run ] || sink_gpu_answers >/dev/null; }; then
    echo build/cuda/sink-run
  else
    echo build/release/sink-run
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-build}" in
    build) sink_detect_build ;;
    bin) sink_pick_bin ;;
    *) echo "usage: $0 [build|bin]" >&2; exit 2 ;;
  esac
fi
