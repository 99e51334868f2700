#!/usr/bin/env bash
# Here (Debian 12, network to the mirror): download the few libraries sink-bench needs
# besides libtorch into .deps/ (git-ignored), to carry to a GPU machine that has PyTorch,
# CUDA and a compiler but not these. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../../.."
mkdir -p .deps && cd .deps
apt-get download libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 nlohmann-json3-dev libpcre2-dev libpcre2-8-0
ls -1
