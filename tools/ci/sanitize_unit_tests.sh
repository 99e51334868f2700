#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer build of the torch-free unit
# tests (CMake preset `asan`, build/asan), then `ctest -L unit` on them. Any
# sanitizer report fails the test that made it (ASan aborts; UBSan is made to
# halt). Leak checking is off: Open MPI's initialisation leaks by design.
#
#   tools/ci/sanitize_unit_tests.sh                 the sanitizer build and its unit tests
#   tools/ci/sanitize_unit_tests.sh --fuzz SECONDS  then also tools/fuzz/run_fuzzers.sh SECONDS
#
# Environment: SINK_JOBS (build parallelism, default 1).
set -euo pipefail
cd "$(dirname "$0")/../.."

FUZZ=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --fuzz) FUZZ=${2:?--fuzz needs SECONDS}; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "sanitize_unit_tests: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

B=build/asan
# The unit-test binaries (tests/{io,tok,config,dist,store,util}/CMakeLists.txt); sink_dist links libtorch
# for the stage transport (libtorch itself is not instrumented).
TARGETS=(test_io_gguf test_tok_unit test_config test_dist test_transport test_store test_util)

cmake --preset asan >"$B.configure.log" 2>&1 || { cat "$B.configure.log" >&2; exit 2; }
cmake --build "$B" --target "${TARGETS[@]}" -j "${SINK_JOBS:-1}"

export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# -L unit is exactly these binaries' tests (plus the gguf fixture they need).
# Unit tests that link libtorch (label torch) are not built here: libtorch is not instrumented.
ctest --test-dir "$B" -L unit -LE torch --output-on-failure -j "${SINK_JOBS:-1}" --timeout 600

if [[ -n $FUZZ ]]; then
  tools/fuzz/run_fuzzers.sh "$FUZZ"
fi
