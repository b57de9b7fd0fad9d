"""Embedding-based checks: paraphrase-aware decontamination, semantic dedup, diversity metrics."""

from nemo_taskseed.filter.semantic.embed import Embedder, item_text
from nemo_taskseed.filter.semantic.index import SemanticHit, SemanticIndex
from nemo_taskseed.filter.semantic.views import benchmark_views, item_windows

__all__ = ["Embedder", "SemanticHit", "SemanticIndex", "benchmark_views", "item_text", "item_windows"]
