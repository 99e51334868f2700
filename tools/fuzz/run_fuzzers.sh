#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang into build/fuzz and runs
# each for SECONDS, from seeds made of real files (tools/fuzz/make_seeds.py)
# plus the corpus kept in build/fuzz/corpus/ by earlier runs. A failing input
# is saved under fuzz/regressions/<target>/ (commit it once fixed: ctest
# replays it), and the script exits 1. Then every saved regression input is
# replayed (ctest --test-dir build/fuzz/fuzz -L fuzz).
#
#   tools/fuzz/run_fuzzers.sh SECONDS [TARGET...]     e.g. 10 in CI, 60 or more by hand
#
# Environment: SINK_FUZZ_BUILD (default build/fuzz), SINK_SHARED_DATA,
# SINK_FIXTURES (seed sources; default build/release/fixtures, skipped if absent),
# SINK_FUZZ_JOBS (build parallelism, default 1).
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$PWD

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
SECONDS_PER_TARGET=$1
shift
ALL=(fuzz_safetensors fuzz_safetensors_index fuzz_gguf fuzz_config_json fuzz_tokenizer_json
     fuzz_tokenizer_model fuzz_config_yaml fuzz_eval_jsonl fuzz_tokenize_text)
[[ $# -gt 0 ]] && TARGETS=("$@") || TARGETS=("${ALL[@]}")

B=${SINK_FUZZ_BUILD:-build/fuzz}
SHARED=${SINK_SHARED_DATA:-$SRC/../shared/data}
FIXTURES=${SINK_FIXTURES:-$SRC/build/release/fixtures}
PY=python3
[[ -x .venv/bin/python ]] && PY=.venv/bin/python

# --- build ------------------------------------------------------------------------
command -v clang++ >/dev/null || { echo "run_fuzzers: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
if [[ ! -f $B/CMakeCache.txt ]]; then
  CC=clang CXX=clang++ cmake -S . -B "$B" -DSINK_FUZZ=ON -DSINK_WITH_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug \
    -DSINK_SHARED_DATA="$SHARED" >"$B.configure.log" 2>&1 || { cat "$B.configure.log" >&2; exit 2; }
fi
cmake --build "$B" --target "${TARGETS[@]}" -j "${SINK_FUZZ_JOBS:-1}" >"$B/build.log" 2>&1 || { tail -50 "$B/build.log" >&2; exit 2; }

# --- seeds ---------------------------------------------------------------------------
rm -rf "$B/seeds"
"$PY" tools/fuzz/make_seeds.py "$B/seeds" --fixtures "$FIXTURES" --shared "$SHARED" >"$B/seeds.log"

# --- run -------------------------------------------------------------------------------
max_len() {
  case $1 in
    fuzz_gguf|fuzz_tokenizer_json) echo 65536 ;;
    fuzz_safetensors|fuzz_tokenizer_model) echo 16384 ;;
    fuzz_tokenize_text) echo 4096 ;;
    *) echo 8192 ;;
  esac
}
rss_limit() {
  case $1 in
    fuzz_tokenize_text|fuzz_config_json) echo 4096 ;;
    *) echo 2048 ;;
  esac
}
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=0:handle_abort=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export SINK_SHARED_DATA=$SHARED
mkdir -p "$B/logs"
SUMMARY=$B/summary.tsv
printf "target\tseconds\tseeds\texecutions\texec_per_s\tnew_units\tcorpus\tcoverage\tpeak_rss_mb\tresult\n" >"$SUMMARY"
failed=0
for t in "${TARGETS[@]}"; do
  corpus=$B/corpus/$t
  seeds=$B/seeds/$t
  regress=$SRC/fuzz/regressions/$t
  mkdir -p "$corpus" "$seeds" "$regress"
  dict=()
  [[ -f fuzz/dicts/${t#fuzz_}.dict ]] && dict=(-dict="fuzz/dicts/${t#fuzz_}.dict")
  log=$B/logs/$t.log
  # The targets write their input files here: after a kill, the input being run is still there.
  shm=/dev/shm
  [[ -d $shm && -w $shm ]] || shm=$B
  export SINK_FUZZ_WORKDIR=$shm/sink-fuzz-$t-$$
  rm -rf "$SINK_FUZZ_WORKDIR"
  rc=0
  # The watchdog: after an out-of-memory report ASan's heap profile can take many minutes.
  timeout -s KILL $((SECONDS_PER_TARGET + 300)) "$B/fuzz/$t" -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$t")" \
    -rss_limit_mb="$(rss_limit "$t")" -malloc_limit_mb=1024 -timeout=20 -print_final_stats=1 \
    -artifact_prefix="$regress/" "${dict[@]}" "$corpus" "$seeds" >"$log" 2>&1 || rc=$?
  stat_of() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  result=ok
  if [[ $rc -ne 0 ]]; then
    result="FAILED (rc $rc): $(grep -m1 -E 'ERROR:|fuzz finding|runtime error|uncaught|SUMMARY' "$log" | head -c 200 || true)"
    [[ $rc -eq 137 ]] && result+=" [killed by the watchdog; the input being run is in $SINK_FUZZ_WORKDIR]"
    failed=1
  else
    rm -rf "$SINK_FUZZ_WORKDIR"
  fi
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$t" "$SECONDS_PER_TARGET" "$(ls "$seeds" | wc -l)" \
    "$(stat_of number_of_executed_units)" "$(stat_of average_exec_per_sec)" "$(stat_of new_units_added)" \
    "${corp:-?}" "${cov:-?}" "$(stat_of peak_rss_mb)" "$result" >>"$SUMMARY"
  tail -1 "$SUMMARY"
done

# --- replay every saved failing input ------------------------------------------------------
unset SINK_FUZZ_WORKDIR  # the replays use private folders, removed at exit
cmake "$B" >/dev/null  # pick up new files in fuzz/regressions/
cmake --build "$B" --target "${TARGETS[@]}" -j "${SINK_FUZZ_JOBS:-1}" >>"$B/build.log" 2>&1
only=$(IFS="|"; echo "${TARGETS[*]}")
if ! ctest --test-dir "$B/fuzz" -L fuzz -R "^(${only})_regressions\$" --output-on-failure >"$B/logs/regressions.log" 2>&1; then
  grep -E "tests passed|Failed|\*\*\*" "$B/logs/regressions.log" >&2 || true
  failed=1
else
  grep -E "tests passed|No tests" "$B/logs/regressions.log" || true
fi
echo "summary: $SUMMARY; logs: $B/logs/"
exit $failed
