#!/usr/bin/env bash
# Sets everything up and runs the engine (connrepd) in the foreground on its
# built-in default config: ipc:// endpoints under ./var/run/connrep, state in
# ./var/lib/connrep, the table in shared memory /connrep. Ctrl-C stops it.
# Extra arguments go to connrepd (e.g. --config etc/connrep.conf).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash scripts/build.sh build
exec ./build/bin/connrepd --foreground "$@"
