#!/usr/bin/env bash
# Builds sink-run (the whole pipeline: MPI, parallel HDF5, yaml-cpp, spdlog), sink-bench and sink-lm against
# the libtorch of `python3`, with CUDA when that torch has it, from Debian 12's libraries unpacked
# into DEPS_PREFIX (fetch_debs.sh's .debs, `dpkg -x`): for the GPU machine, which has PyTorch, CUDA
# and a compiler but none of these, and where nothing can be installed. No CMake: the flags are the
# ones CMakeLists.txt gives (sink-run: every folder of src/).
#   tools/bench/gpu/build_sink_run.sh DEPS_PREFIX OUT_DIR
# Environment: PYTHON (default python3), CXX (default g++), CUDA_HOME (default /usr/local/cuda).
set -euo pipefail
cd "$(dirname "$0")/../../.."
DEPS=$(realpath "$1"); OUT=$(realpath -m "$2"); mkdir -p "$OUT/obj"
PY=${PYTHON:-python3}
CXX=${CXX:-g++}
TORCH=$($PY -c 'import torch, os; print(os.path.dirname(torch.__file__))')
CUDA=$($PY -c 'import torch; print(1 if torch.version.cuda else 0)')
ABI=$($PY -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
CUDA_INC=$CUDA_HOME/include
if [[ ! -f $CUDA_INC/cuda_runtime_api.h ]]; then  # the pip wheels' CUDA headers instead
  CUDA_INC=$($PY -c 'import nvidia.cuda_runtime, os; print(os.path.join(list(nvidia.cuda_runtime.__path__)[0], "include"))' 2>/dev/null || echo /nonexistent)
fi
L=$DEPS/usr/lib/x86_64-linux-gnu
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
VERSION=$(sed -n 's/^project(sink VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
DEFS="-DSPDLOG_SHARED_LIB -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL -D_GLIBCXX_USE_CXX11_ABI=$ABI"
DEFS="$DEFS -DOMPI_SKIP_MPICXX=1 -DMPICH_SKIP_MPICXX=1"
LIBS="-L$TORCH/lib -Wl,-rpath,$TORCH/lib -ltorch -ltorch_cpu -lc10"
if [[ $CUDA == 1 ]]; then
  DEFS="$DEFS -DSINK_WITH_CUDA=1"
  LIBS="$LIBS -Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed"
fi
# Our spdlog/fmt before libtorch's headers: the torch wheel bundles another fmt.
INC="-Iinclude -I$DEPS/usr/include -I$DEPS/usr/include/hdf5/openmpi -isystem $L/openmpi/include"
INC="$INC -isystem $L/openmpi/include/openmpi -I$TORCH/include -I$TORCH/include/torch/csrc/api/include -I$CUDA_INC"
# DT_RPATH (not RUNPATH): the carried libraries' own dependencies are found there too.
DLIBS="-L$L -L$L/hdf5/openmpi -L$L/openmpi/lib -Wl,--disable-new-dtags"
DLIBS="$DLIBS -Wl,-rpath,$L:$L/hdf5/openmpi:$L/openmpi/lib -lhdf5 -lmpi -lyaml-cpp -lspdlog -lfmt -lpcre2-8 -lpthread -ldl"
SRCS=(src/util/*.cpp src/io/*.cpp src/tok/*.cpp src/model/*.cpp src/metrics/*.cpp src/ssp/*.cpp
  src/config/*.cpp src/dist/*.cpp src/store/*.cpp src/run/*.cpp)
MAINS=(src/cli/sink_run.cpp src/cli/sink_bench.cpp src/cli/sink_lm.cpp)
compile() {  # an object newer than its source is kept
  local o="$OUT/obj/$(echo "$1" | tr / _).o" extra=()
  [[ $1 != src/run/results.cpp ]] || extra=("-DSINK_VERSION=\"$VERSION\"" "-DSINK_GIT_COMMIT=\"$COMMIT\"")
  # shellcheck disable=SC2086  # flag lists, split on purpose
  [[ -f $o && $o -nt $1 ]] || $CXX -std=c++20 -O2 -fPIC $DEFS $INC "${extra[@]}" -c "$1" -o "$o"
}
export -f compile; export OUT DEFS INC CXX VERSION COMMIT
printf '%s\n' "${SRCS[@]}" "${MAINS[@]}" | xargs -P "$(nproc)" -I{} bash -c 'compile {}' || exit 1
objs() { for f in "$@"; do echo "$OUT/obj/$(echo "$f" | tr / _).o"; done; }
for main in "${MAINS[@]}"; do
  bin=$(basename "$main" .cpp | tr _ -)
  $CXX -o "$OUT/$bin" $(objs "$main" "${SRCS[@]}") $LIBS $DLIBS
done
echo "built $OUT/sink-run, sink-bench and sink-lm (CUDA=$CUDA, commit $COMMIT)"
