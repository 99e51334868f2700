#!/usr/bin/env bash
# Here (Debian 12, network to the mirror): download into .deps/ (git-ignored) what the GPU
# machine lacks, to carry there (it has PyTorch, CUDA, CMake and a compiler, and nothing can be
# fetched on it):
#  - the libraries sink-bench and sink-lm need besides libtorch (spdlog, fmt, nlohmann-json, PCRE2);
#  - for sink-run as well (device_run.sh): Open MPI (with mpirun), parallel HDF5, yaml-cpp and the
#    runtime libraries they load that a stock Ubuntu/Debian image may lack;
#  - pytest from the project's .venv (pure Python) into .deps/py, one corpus for the tiny
#    checkpoints, the stories260K GGUF and the Llama 2 tokenizer (shared data, outside the repo).
# See docs/benchmarks.md and docs/gpu.md. Everything together stays under the 64 MiB a device
# call carries.
set -euo pipefail
cd "$(dirname "$0")/../../.."
mkdir -p .deps && cd .deps
rm -f ./*.deb
apt-get download libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 nlohmann-json3-dev libpcre2-dev libpcre2-8-0
# sink-run: headers and link libraries, then what those load (ldd of libmpi, libhdf5_openmpi,
# orterun and the MCA/PMIx plugins on Debian 12, less what every glibc image has).
apt-get download libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common libhdf5-openmpi-dev libhdf5-openmpi-103-1 \
  libyaml-cpp-dev libyaml-cpp0.7 libpmix2 libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7 libfabric1 \
  libucx0 libibverbs1 ibverbs-providers librdmacm1 libnl-3-200 libnl-route-3-200 libpsm2-2 libpsm-infinipath1 \
  libmunge2 libnuma1 libaec0 libsz2 libcurl4 libnghttp2-14 librtmp1 libssh2-1 libpsl5 libldap-2.5-0 libsasl2-2 \
  libbrotli1
SITE=$(../.venv/bin/python -c 'import site; print(site.getsitepackages()[0])')
rm -rf py && mkdir py
for pkg in pytest _pytest pluggy iniconfig packaging pygments py.py; do cp -r "$SITE/$pkg" py/; done
SHARED=${SINK_SHARED_DATA:-../../shared/data}
# The text make_tiny_models.py trains the tiny checkpoints' tokenizer on.
cp "$SHARED/corpora/moby-dick.jsonl" .
# A real model small enough to carry (the demo's SmolLM2 GGUF is 94 MiB), and the 7B shape's tokenizer.
mkdir -p shared/models/stories260K shared/tokenizers/llama-2 shared/corpora
cp moby-dick.jsonl shared/corpora/  # tests/run's eval sets come from here
cp "$SHARED"/models/stories260K/* shared/models/stories260K/
cp "$SHARED"/tokenizers/llama-2/tokenizer.model shared/tokenizers/llama-2/
ls -1
du -sh .
