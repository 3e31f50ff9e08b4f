#!/usr/bin/env bash
# Sets everything up and runs the engine on its built-in default config.
# Extra arguments go to the engine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash scripts/build.sh build
exec ./build/bin/connrep-replay "$@"
