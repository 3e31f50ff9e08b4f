#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang, ASan and UBSan in
# build-fuzz, runs every target once over its regression inputs and seeds
# (ctest -L fuzz), then fuzzes each target for a bounded time on a copy of
# its seed corpus, and prints the executions per target.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  fuzzing time per target (default 30)
#   TARGET   fuzz_feed fuzz_lookup fuzz_admin fuzz_config (default: all)
#
# Exits non-zero when a regression input fails or a target crashes (a
# sanitizer report, a failed CHECK, a leak, a timeout of 10 s on one input,
# or more than 2 GiB of memory). The input that crashed is kept under
# build-fuzz/artifacts/TARGET/ and its log is printed; to keep it as a
# regression test, copy it to tests/fuzz/regressions/TARGET/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

secs=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_feed fuzz_lookup fuzz_admin fuzz_config)
case $secs in
'' | *[!0-9]*)
  echo "fuzz.sh: SECONDS must be a whole number, got '$secs'" >&2
  exit 2
  ;;
esac

# The largest input each target generates: a few dozen feed events or
# lookup ids, an admin request of a few KiB, a config file with one line
# over the 16 KiB limit.
max_len() {
  case $1 in
  fuzz_feed) echo 4096 ;;
  fuzz_lookup) echo 4096 ;;
  fuzz_admin) echo 4096 ;;
  fuzz_config) echo 20000 ;;
  *)
    echo "fuzz.sh: unknown target '$1'" >&2
    exit 2
    ;;
  esac
}
for t in "${targets[@]}"; do max_len "$t" >/dev/null; done

bash scripts/setup.sh
build="build-fuzz"
echo "== build ($build: clang, libFuzzer, address,undefined)"
# -O1: the usual trade between fuzzing speed and readable reports; Debug
# keeps assert() on (the wire iterators assert what decoding proved).
cmake -S "$root" -B "$root/$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS_DEBUG="-g -O1" -DCONNREP_SANITIZE=address,undefined -DCONNREP_TESTS=OFF \
  -DCONNREP_FUZZ=ON >/dev/null
cmake --build "$root/$build" -j"$(nproc)" --target "${targets[@]}" >/dev/null

echo "== regressions and seeds (ctest -L fuzz)"
regex=$(IFS='|'; echo "${targets[*]}")
(cd "$build" && ctest --output-on-failure -L fuzz -R "^($regex)_regressions\$")

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
work=$(mktemp -d "${TMPDIR:-/tmp}/connrep-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
# fuzz_admin keeps its audit log in a directory under TMPDIR; one left by a
# crash goes away with the rest.
mkdir "$work/tmp"
export TMPDIR="$work/tmp"

declare -A execs status
failed=0
for t in "${targets[@]}"; do
  echo "== $t (${secs} s)"
  mkdir -p "$work/$t" "$build/artifacts/$t"
  cp -R "tests/fuzz/corpus/$t" "$work/$t/corpus"
  log="$work/$t/log"
  rc=0
  "$build/bin/$t" "$work/$t/corpus" -max_total_time="$secs" -max_len="$(max_len "$t")" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$t/" >"$log" 2>&1 || rc=$?
  n=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  execs[$t]=${n:-"?"}
  if [ "$rc" -ne 0 ]; then
    status[$t]="CRASH (exit $rc)"
    failed=1
    echo "-- $t failed; last lines of its log:"
    tail -n 60 "$log"
    echo "-- crashing input(s) kept in $build/artifacts/$t/:"
    ls -1 "$build/artifacts/$t/" || true
  else
    status[$t]=ok
  fi
done

echo
printf '%-12s %14s %10s  %s\n' target executions "exec/s" result
for t in "${targets[@]}"; do
  rate="?"
  case ${execs[$t]} in
  '' | *[!0-9]*) ;;
  *) [ "$secs" -gt 0 ] && rate=$((execs[$t] / secs)) ;;
  esac
  printf '%-12s %14s %10s  %s\n' "$t" "${execs[$t]}" "$rate" "${status[$t]}"
done
if [ "$failed" -ne 0 ]; then
  echo "fuzz.sh: a target crashed" >&2
  exit 1
fi
echo "== fuzzing passed"
