#!/usr/bin/env bash
# README's test command: set up .venv (if needed), lint and format-check with ruff (pyproject.toml),
# then run the whole test suite on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TASKSEED_CACHE_DIR="$PWD/.cache"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -X faulthandler -m pytest -q -p no:cacheprovider "$@"
