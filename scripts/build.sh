#!/usr/bin/env bash
# Configures and builds one build directory.
# Usage: scripts/build.sh DIR [SANITIZER]   (SANITIZER: none | address,undefined | thread)
set -euo pipefail
dir=${1:-build}
san=${2:-none}
root=$(cd "$(dirname "$0")/.." && pwd)
extra=()
if [ "$san" != "none" ]; then
  # clang's sanitizer runtimes come with the clang package; Debug keeps
  # stack traces readable.
  extra=(-DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug)
fi
cmake -S "$root" -B "$root/$dir" -DCONNREP_SANITIZE="$san" "${extra[@]}" >/dev/null
cmake --build "$root/$dir" -j"$(nproc)" >/dev/null
