#!/usr/bin/env bash
# Here (Debian 12, network to the mirror): download the few libraries sink-bench and
# sink-lm need besides libtorch into .deps/ (git-ignored), to carry to a GPU machine that
# has PyTorch, CUDA and a compiler but not these; and pytest from the project's .venv
# (pure Python) into .deps/py and one corpus for device_parity.sh. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../../.."
mkdir -p .deps && cd .deps
apt-get download libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 nlohmann-json3-dev libpcre2-dev libpcre2-8-0
SITE=$(../.venv/bin/python -c 'import site; print(site.getsitepackages()[0])')
rm -rf py && mkdir py
for pkg in pytest _pytest pluggy iniconfig packaging pygments py.py; do cp -r "$SITE/$pkg" py/; done
# The text make_tiny_models.py trains the tiny checkpoints' tokenizer on.
cp "${SINK_SHARED_DATA:-../../shared/data}/corpora/moby-dick.jsonl" .
ls -1
