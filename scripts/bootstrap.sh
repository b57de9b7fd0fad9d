#!/usr/bin/env bash
# README's set-up command: create .venv on a fresh machine and run the default job
# (`taskseed run default`: no hub, no GPU, the embedded demo seed mirror).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TASKSEED_CACHE_DIR="${TASKSEED_CACHE_DIR:-$PWD/.cache}"
exec .venv/bin/taskseed run default "$@"
