#!/usr/bin/env bash
# README's test command: set up .venv (if needed), lint and format-check with ruff (pyproject.toml),
# then run the test suite on CPU (docs/testing.md).
#   scripts/test.sh            every test (what CI runs)
#   scripts/test.sh --fast     the fast tier: every test that needs neither the real model, nor Ray,
#                              nor a pipeline in a child process (tests/conftest.py, --fast)
# Other arguments go to pytest: scripts/test.sh --fast tests/test_blend.py -k plan
# No -x: a run lists every failure.
set -euo pipefail
cd "$(dirname "$0")/.."
tier=full
pytest_args=()
for arg in "$@"; do
  if [ "$arg" = --fast ]; then
    tier=fast
  else
    pytest_args+=("$arg")
  fi
done
if [ "$tier" = fast ]; then
  pytest_args=(--fast "${pytest_args[@]}")
fi

bash scripts/setup.sh
export TASKSEED_CACHE_DIR="$PWD/.cache"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "test tier: $tier"
started=$SECONDS
status=0
.venv/bin/python -X faulthandler -m pytest -q -p no:cacheprovider "${pytest_args[@]}" || status=$?
echo "test tier: $tier, exit $status, $((SECONDS - started)) s"
exit "$status"
