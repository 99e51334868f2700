#!/usr/bin/env bash
# The whole sink-run pipeline on a GPU machine, in one call with a time budget (issue 23). Carry
# .deps (fetch_debs.sh, here) with the working tree; there:
#   tools/bench/gpu/device_run.sh OUT_DIR [--budget SECONDS] [--device cuda|cpu] [--shape DIR] [--T N] [--docs N]
# builds sink-run, sink-bench and sink-lm against that machine's PyTorch with MPI, parallel HDF5,
# yaml-cpp and spdlog from the carried Debian packages (build_sink_run.sh), then:
#   1  the demo config on the GPU in float32 against the same run on the CPU: every dataset of
#      results.h5 within rtol 1e-3, atol 1e-4 (compare_results.py)
#   2  the same in bfloat16, GPU against CPU: rtol 5e-2, atol 1e-2
#   3  mpirun -n 2 on the one GPU against check 1's one rank: bit-identical expected, reported
#   4  the 7B-shaped random model (--shape, default data/model_specs/llama2_7b_hf) through sink-run,
#      observation and the four SSP modes at T (default 2000): seconds per document, peak GPU memory
#      (nvidia-smi, polled), and sink-bench's tokens/s per pass on the same shape and length
#   5  SIGKILL mid-run and --resume on the GPU: the result bit-identical to check 1's
#   6  the GPU tests: tests/model/test_parity_hf.py (SINK_DEVICE=cuda, HF on the same card) and
#      tests/run/test_device.py (SINK_BUILD_KIND=cuda)
# Each check runs only if the budget left covers its estimate (else "skipped (budget)"). Results:
# OUT/checks.jsonl, one line per check, and OUT/gpu.md written from them (write_gpu_md.py), the
# page docs/gpu.md is copied from. --device cpu is a rehearsal on a machine without a GPU (CPU
# against CPU; no GPU numbers), with a small --shape.
# The demo's SmolLM2 GGUF (94 MiB) is over what a call carries: where models/ lacks it, checks 1-3
# and 5 run the demo config on the stories260K GGUF that fetch_debs.sh carries (layers_to_show cut to
# its 5 layers; SINK_KIT_DEMO_MODEL=stories forces it); the page says which. SINK_DEPS, SINK_KIT_BIN,
# SINK_KIT_FIXTURES: where the unpacked packages, the build and the tiny checkpoints go (/tmp/...).
set -uo pipefail
cd "$(dirname "$0")/../../.."
OUT=${1:?usage: device_run.sh OUT_DIR [--budget S] [--device cuda|cpu] [--shape DIR] [--T N] [--docs N]}
shift
BUDGET=540 DEV=cuda SHAPE=data/model_specs/llama2_7b_hf T=2000 DOCS=8
while [[ $# -gt 0 ]]; do
  case $1 in
    --budget) BUDGET=$2; shift 2 ;;
    --device) DEV=$2; shift 2 ;;
    --shape) SHAPE=$2; shift 2 ;;
    --T) T=$2; shift 2 ;;
    --docs) DOCS=$2; shift 2 ;;
    *) echo "device_run: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"; OUT=$(realpath "$OUT")
export PYTHONUNBUFFERED=1
T0=$(date +%s)
PY=${PYTHON:-python3}
left() { echo $((BUDGET - ($(date +%s) - T0))); }
say() { echo "[device_run $(($(date +%s) - T0))s] $*" | tee -a "$OUT/run.log"; }
# record CHECK NAME STATUS SECONDS DETAIL_JSON
record() {
  $PY - "$@" >>"$OUT/checks.jsonl" <<'PY'
import json, sys
c, name, status, secs, detail = sys.argv[1:6]
print(json.dumps(dict(check=int(c), name=name, status=status, seconds=int(secs), detail=json.loads(detail or "{}"))))
PY
}
: >"$OUT/checks.jsonl"

# ---- 0: the machine, the carried libraries, the build
{
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "device $DEV, budget ${BUDGET}s"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi answer"
  $PY -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available())'
  echo "cpus $(nproc)"
} 2>&1 | tee "$OUT/machine.txt"
DEPS=${SINK_DEPS:-/tmp/sink_deps}
if [[ ! -d $DEPS/usr ]]; then
  mkdir -p "$DEPS" && for f in .deps/*.deb; do dpkg -x "$f" "$DEPS"; done
fi
BIN=${SINK_KIT_BIN:-/tmp/sink_kit}
t=$(date +%s)
if ! tools/bench/gpu/build_sink_run.sh "$DEPS" "$BIN" >"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"
  record 0 build fail $(($(date +%s) - t)) '{}'
  PYTHON=$PY $PY tools/bench/gpu/write_gpu_md.py "$OUT"
  exit 1
fi
say "build: $(($(date +%s) - t)) s ($(tail -1 "$OUT/build.log"))"
record 0 build pass $(($(date +%s) - t)) '{}'
# The carried Open MPI, relocated (its plugins and help files under DEPS), shared memory only.
L=$DEPS/usr/lib/x86_64-linux-gnu
# The .deb has no `mpirun` (a Debian alternative made at install): a wrapper for its orterun, first
# on PATH (the tests call mpirun too), with the carried libraries for orterun itself.
export OPAL_PREFIX=$DEPS/usr
export PMIX_MCA_mca_base_component_path=$L/pmix2/lib/pmix OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1
mkdir -p "$OUT/bin"
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s:%s/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec %s "$@"\n' "$L" "$L" "$DEPS/usr/bin/orterun" >"$OUT/bin/mpirun"
chmod +x "$OUT/bin/mpirun"
export PATH=$OUT/bin:$PATH
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
# The same intra-op threads in every run, one rank or two: the CPU's float32 sums (the KL over the
# vocabulary) depend on how many threads split them, and check 3 is about ranks.
THREADS=$(( $(nproc) >= 8 ? 4 : 1 ))
SHARED=.deps/shared
# data/models.json with the carried tokenizer paths (shared data is outside the repository)
sed "s#\.\./shared/data/#$SHARED/#g" data/models.json >"$OUT/models.json"
export SINK_MODELS_JSON=$OUT/models.json
GPU_MAP=cuda:0
[[ $DEV == cpu ]] && GPU_MAP=cpu
DEMO=(configs/demo.yaml)
MODEL_NOTE="configs/demo.yaml as it is (SmolLM2-135M-Instruct Q4_1 GGUF)"
if [[ ! -f models/smollm2-135m-instruct.Q4_1.gguf || ${SINK_KIT_DEMO_MODEL:-} == stories ]]; then
  DEMO+=(--set "model=$SHARED/models/stories260K/stories260K.gguf" --set "layers_to_show=[0,1,2,3,4]")
  MODEL_NOTE="configs/demo.yaml with model: stories260K.gguf (the SmolLM2 GGUF is not carried), layers_to_show [0..4]"
fi
run_sink() {  # run_sink LOG ARGS... : sink-run ARGS, its stdout and stderr into LOG.out, LOG.err
  local log=$1
  shift
  "$BIN/sink-run" "$@" --threads "$THREADS" --progress-seconds 5 2>"$log.err" >"$log.out" || { tail -3 "$log.err" | tee -a "$OUT/run.log"; return 1; }
}
compare() {  # compare A B RTOL ATOL LABEL
  $PY tools/bench/gpu/compare_results.py "$1" "$2" --rtol "$3" --atol "$4" --label "$5" --json "$OUT/compare.jsonl" \
    >"$OUT/$5.compare.txt" 2>&1
  local rc=$?
  tail -1 "$OUT/$5.compare.txt" | tee -a "$OUT/run.log"
  return $rc
}
summary() { $PY -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][-1]; r.pop("rows"); print(json.dumps(r))' "$OUT/compare.jsonl"; }

# ---- 1: float32, GPU against CPU
if (($(left) > 120)); then
  t=$(date +%s)
  run_sink "$OUT/c1_gpu" "${DEMO[@]}" --set "out=$OUT/c1_gpu" --set "device_map=$GPU_MAP" &&
    run_sink "$OUT/c1_cpu" "${DEMO[@]}" --set "out=$OUT/c1_cpu" --set device_map=cpu &&
    compare "$OUT/c1_gpu/results.h5" "$OUT/c1_cpu/results.h5" 1e-3 1e-4 c1_float32
  rc=$?
  devs=$($PY -c 'import h5py,sys; f=h5py.File(sys.argv[1]); print(f[f.attrs["runs"].split(",")[0]].attrs["devices"])' "$OUT/c1_gpu/results.h5" 2>/dev/null)
  record 1 "float32 $DEV vs cpu" $([[ $rc == 0 ]] && echo pass || echo fail) $(($(date +%s) - t)) \
    "$($PY -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(devices=sys.argv[2], model=sys.argv[3]); print(json.dumps(d))' "$(summary 2>/dev/null || echo '{}')" "$devs" "$MODEL_NOTE")"
else record 1 "float32 $DEV vs cpu" "skipped (budget)" 0 '{}'; fi

# ---- 2: bfloat16, GPU against CPU
if (($(left) > 100)); then
  t=$(date +%s)
  run_sink "$OUT/c2_gpu" "${DEMO[@]}" --set "out=$OUT/c2_gpu" --set "device_map=$GPU_MAP" --set dtype=bfloat16 &&
    run_sink "$OUT/c2_cpu" "${DEMO[@]}" --set "out=$OUT/c2_cpu" --set device_map=cpu --set dtype=bfloat16 &&
    compare "$OUT/c2_gpu/results.h5" "$OUT/c2_cpu/results.h5" 5e-2 1e-2 c2_bfloat16
  rc=$?
  record 2 "bfloat16 $DEV vs cpu" $([[ $rc == 0 ]] && echo pass || echo fail) $(($(date +%s) - t)) "$(summary 2>/dev/null || echo '{}')"
else record 2 "bfloat16 $DEV vs cpu" "skipped (budget)" 0 '{}'; fi

# ---- 3: two ranks on the one GPU against one rank
if (($(left) > 80)) && [[ -f $OUT/c1_gpu/results.h5 ]]; then
  t=$(date +%s)
  "${MPIRUN[@]}" -n 2 "$BIN/sink-run" "${DEMO[@]}" --set "out=$OUT/c3_gpu2" --set "device_map=$([[ $DEV == cpu ]] && echo cpu || echo auto)" \
    --threads "$THREADS" --progress-seconds 5 >"$OUT/c3_gpu2.out" 2>"$OUT/c3_gpu2.err" &&
    compare "$OUT/c3_gpu2/results.h5" "$OUT/c1_gpu/results.h5" 0 0 c3_two_ranks
  rc=$?
  [[ $rc == 0 ]] || tail -5 "$OUT/c3_gpu2.err" | tee -a "$OUT/run.log"
  devs=$($PY -c 'import h5py,sys; f=h5py.File(sys.argv[1]); print(f[f.attrs["runs"].split(",")[0]].attrs["devices"])' "$OUT/c3_gpu2/results.h5" 2>/dev/null)
  record 3 "mpirun -n 2 on one $DEV vs 1 rank" $([[ $rc == 0 ]] && echo pass || echo fail) $(($(date +%s) - t)) \
    "$($PY -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(devices=sys.argv[2]); print(json.dumps(d))' "$(summary 2>/dev/null || echo '{}')" "$devs")"
else record 3 "mpirun -n 2 on one $DEV vs 1 rank" "skipped (budget or no check 1)" 0 '{}'; fi

# ---- 4: the 7B-shaped random model through sink-run at T, observation and four SSP modes
if (($(left) > 200)); then
  t=$(date +%s)
  DT=bfloat16
  [[ $DEV == cpu ]] && DT=float32
  cat >"$OUT/c4.yaml" <<EOF
model: random:$SHAPE/config.json
eval_jsonl: data/eval/sotu_n50_ml4000_seed42/eval.jsonl
max_docs: $DOCS
out: $OUT/c4
max_total_tokens: $T
max_tokens_to_calc: $T
dtype: $DT
device_map: $([[ $DEV == cpu ]] && echo cpu || echo auto)
layers_to_show: [0, 1]
intervention:
  modes: [ssp_bias, ssp_drop, zero, random]
  calibration_jsonl: data/eval/austen_n32_ml512_seed7/eval.jsonl
  calibration_docs: 2
EOF
  POLL=$OUT/c4.gpumem
  : >"$POLL"
  if [[ $DEV == cuda ]]; then
    (while sleep 0.5; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >>"$POLL" 2>/dev/null; done) &
    poller=$!
  fi
  run_sink "$OUT/c4" "$OUT/c4.yaml"
  rc=$?
  [[ -z ${poller:-} ]] || kill "$poller" 2>/dev/null
  wall=$(($(date +%s) - t))
  # sink-bench on the same shape and length: tokens/s of each pass
  timeout $(( $(left) > 150 ? 150 : $(left) )) "$BIN/sink-bench" --random-weights "$SHAPE/config.json" --lengths "$T" --dtype "$DT" \
    --device "$GPU_MAP" --reps 3 --no-hf >"$OUT/c4.bench.txt" 2>&1
  detail=$($PY - "$OUT" "$DOCS" "$wall" <<'PY'
import json, re, sys
out, docs, wall = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
err = open(f"{out}/c4.err").read()
d = dict(wall_s=wall)
m = [x for x in re.findall(r"\] (\S+): (\d+)/(\d+) documents, ([\d.]+) tok/s, elapsed (\d+)s", err) if "calibration" not in x[0]]
if m:
    name, done, total, tps, el = m[-1]
    d.update(documents=int(done), tokens_per_s=float(tps), eval_elapsed_s=int(el))
    try:  # the log's elapsed is whole seconds: the time per document from the tokens and the rate instead
        import h5py
        with h5py.File(f"{out}/c4/results.h5") as f:
            n = f[f.attrs["runs"].split(",")[0]]["docs/n_tokens"][()]
        d.update(tokens=int(n.sum()), s_per_document=round(float(n.sum()) / float(tps) / len(n), 3))
    except Exception as e:
        d["s_per_document_error"] = str(e)
mem = [int(x) for x in open(f"{out}/c4.gpumem").read().split() if x.isdigit()]
if mem: d["peak_gpu_mib"] = max(mem)
passes = {}
for line in open(f"{out}/c4.bench.txt"):
    r = re.match(r"\s*ours: (.+?)\s{2,}([\d.]+) s\s+(\d+) tok/s", line)
    if r: passes[r.group(1)] = dict(s=float(r.group(2)), tok_s=int(r.group(3)))
d["passes"] = passes
d["last_log_line"] = err.strip().splitlines()[-1] if err.strip() else ""
print(json.dumps(d))
PY
)
  record 4 "random:$SHAPE, T=$T ($DT, $DEV)" $([[ $rc == 0 ]] && echo pass || echo fail) "$wall" "$detail"
  say "check 4: $detail"
else record 4 "random:$SHAPE, T=$T" "skipped (budget)" 0 '{}'; fi

# ---- 5: SIGKILL mid-run, then --resume: the same file as check 1's
if (($(left) > 90)) && [[ -f $OUT/c1_gpu/results.h5 ]]; then
  t=$(date +%s)
  # the default bucket size, as check 1 (the bucket sums' order is part of the result)
  SINK_FAULT_DELAY_MS=400 "$BIN/sink-run" "${DEMO[@]}" --set "out=$OUT/c5" --set "device_map=$GPU_MAP" --threads "$THREADS" \
    >"$OUT/c5.out" 2>"$OUT/c5.err" &
  pid=$!
  n=0
  for _ in $(seq 600); do
    n=$(find "$OUT/c5/.partial" -name 'doc_*.safetensors' 2>/dev/null | wc -l)
    ((n >= 5)) && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  killed_at=$n
  "$BIN/sink-run" "${DEMO[@]}" --set "out=$OUT/c5" --set "device_map=$GPU_MAP" --threads "$THREADS" --resume \
    >"$OUT/c5r.out" 2>"$OUT/c5r.err" &&
    compare "$OUT/c5/results.h5" "$OUT/c1_gpu/results.h5" 0 0 c5_resume
  rc=$?
  record 5 "SIGKILL + --resume on $DEV" $([[ $rc == 0 ]] && echo pass || echo fail) $(($(date +%s) - t)) \
    "$($PY -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(killed_after_documents=int(sys.argv[2])); print(json.dumps(d))' "$(summary 2>/dev/null || echo '{}')" "$killed_at")"
else record 5 "SIGKILL + --resume on $DEV" "skipped (budget or no check 1)" 0 '{}'; fi

# ---- 6: the GPU tests
if (($(left) > 150)); then
  t=$(date +%s)
  FX=${SINK_KIT_FIXTURES:-/tmp/sink_fx}
  [[ -d $FX/tiny ]] || $PY tools/fixtures/make_tiny_models.py "$FX/tiny" --corpus .deps/moby-dick.jsonl >"$OUT/fixtures.log" 2>&1
  env SINK_DEVICE="$DEV" SINK_BUILD_DIR="$BIN" SINK_FIXTURES=$FX SINK_SHARED_DATA="$SHARED" SINK_BUILD_KIND=$($PY -c 'import torch; print("cuda" if torch.version.cuda else "cpu")') \
    PYTHONPATH="$PWD/.deps/py:$PWD/tests/model:$PWD/tests/run" \
    timeout $(($(left) - 20)) $PY -m pytest -q -p no:cacheprovider tests/model/test_parity_hf.py tests/run/test_device.py \
    >"$OUT/c6_tests.txt" 2>&1
  rc=$?
  tail -3 "$OUT/c6_tests.txt" | tee -a "$OUT/run.log"
  record 6 "tests on $DEV (test_parity_hf, test_device)" $([[ $rc == 0 ]] && echo pass || echo fail) $(($(date +%s) - t)) \
    "$($PY -c 'import json,sys; print(json.dumps(dict(summary=sys.argv[1])))' "$(grep -E 'passed|failed|error' "$OUT/c6_tests.txt" | tail -1)")"
else record 6 "tests on $DEV" "skipped (budget)" 0 '{}'; fi

$PY tools/bench/gpu/write_gpu_md.py "$OUT"
say "done in $(($(date +%s) - T0)) s: $OUT/gpu.md"
