#!/usr/bin/env bash
# Sets everything up and runs every test:
#   1. the plain build (RelWithDebInfo): all suites, integration included;
#   2. ASan+UBSan: all suites again but the benchmark smoke runs;
#   3. TSan: the table stress programs (Criterion's runner does not start
#      under TSan, so they are plain executables labelled "stress");
#   4. libFuzzer (clang, ASan+UBSan): every target over its regressions and
#      seed corpus, then 30 s of fuzzing each.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh

jobs=$(nproc)
echo "== build (plain)"
bash scripts/build.sh build
(cd build && ctest --output-on-failure -j"$jobs")

echo "== build (address,undefined)"
bash scripts/build.sh build-asan address,undefined
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j"$jobs" -LE "nosan|bench")

echo "== build (thread)"
bash scripts/build.sh build-tsan thread
(cd build-tsan && TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure -L stress)
echo "== fuzz (libFuzzer, address,undefined)"
bash scripts/fuzz.sh 30
echo "== all tests passed"
