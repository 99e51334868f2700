#!/usr/bin/env bash
# Builds sink-bench and sink-lm alone (engine, tokenizers, metrics, SSP; no MPI, HDF5 or
# yaml-cpp) against the libtorch of `python3`, with CUDA when that torch has it. For a GPU
# machine with PyTorch and a compiler but without the Debian packages of our full build.
#   tools/bench/gpu/build_sink_bench.sh DEPS_PREFIX OUT_DIR
# DEPS_PREFIX holds spdlog, fmt, nlohmann-json and PCRE2 (usr/include, usr/lib/x86_64-linux-gnu),
# e.g. the .debs from fetch_debs.sh unpacked with dpkg -x.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DEPS=$(realpath "$1"); OUT=$(realpath -m "$2"); mkdir -p "$OUT/obj"
PY=${PYTHON:-python3}
TORCH=$($PY -c 'import torch, os; print(os.path.dirname(torch.__file__))')
CUDA=$($PY -c 'import torch; print(1 if torch.version.cuda else 0)')
ABI=$($PY -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
CUDA_INC=$CUDA_HOME/include
if [[ ! -f $CUDA_INC/cuda_runtime_api.h ]]; then  # the pip wheels' CUDA headers instead
  CUDA_INC=$($PY -c 'import nvidia.cuda_runtime, os; print(os.path.join(list(nvidia.cuda_runtime.__path__)[0], "include"))' 2>/dev/null || echo /nonexistent)
fi
DEFS="-DSPDLOG_SHARED_LIB -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL -D_GLIBCXX_USE_CXX11_ABI=$ABI"
LIBS="-L$TORCH/lib -Wl,-rpath,$TORCH/lib -ltorch -ltorch_cpu -lc10"
if [[ $CUDA == 1 ]]; then
  DEFS="$DEFS -DSINK_WITH_CUDA=1"
  LIBS="$LIBS -Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed"
fi
# Our spdlog/fmt before libtorch's headers: the torch wheel bundles another fmt.
INC="-Iinclude -I$DEPS/usr/include -I$TORCH/include -I$TORCH/include/torch/csrc/api/include -I$CUDA_INC"
DLIB="$DEPS/usr/lib/x86_64-linux-gnu"
SRCS=(src/util/*.cpp src/io/*.cpp src/tok/*.cpp src/model/*.cpp src/metrics/*.cpp src/ssp/*.cpp)
MAINS=(src/cli/sink_bench.cpp src/cli/sink_lm.cpp)
compile() {  # an object newer than its source is kept
  local o="$OUT/obj/$(echo "$1" | tr / _).o"
  [[ -f $o && $o -nt $1 ]] || g++ -std=c++20 -O2 -fPIC $DEFS $INC -c "$1" -o "$o"
}
export -f compile; export OUT DEFS INC
printf '%s\n' "${SRCS[@]}" "${MAINS[@]}" | xargs -P "$(nproc)" -I{} bash -c 'compile {}' || exit 1
objs() { for f in "$@"; do echo "$OUT/obj/$(echo "$f" | tr / _).o"; done; }
for main in "${MAINS[@]}"; do
  bin=$(basename "$main" .cpp | tr _ -)
  g++ -o "$OUT/$bin" $(objs "${SRCS[@]}" "$main") $LIBS -L"$DLIB" -Wl,-rpath,"$DLIB" -lspdlog -lfmt -lpcre2-8 -lpthread
done
echo "built $OUT/sink-bench and $OUT/sink-lm (CUDA=$CUDA)"
