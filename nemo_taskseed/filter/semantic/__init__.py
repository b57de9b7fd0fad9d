"""Embedding-based checks: paraphrase-aware decontamination, semantic dedup, diversity metrics."""

from nemo_taskseed.filter.semantic.embed import Embedder, benchmark_text, item_text
from nemo_taskseed.filter.semantic.index import SemanticHit, SemanticIndex

__all__ = ["Embedder", "SemanticHit", "SemanticIndex", "benchmark_text", "item_text"]
