#!/usr/bin/env bash
# README's test command: set up .venv (if needed) and run the whole test suite on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TASKSEED_CACHE_DIR="$PWD/.cache"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
