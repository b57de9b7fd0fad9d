"""A faiss inner-product index over normalized benchmark embeddings (exact search).

Exact (`IndexFlatIP`), not approximate: the scored splits of all default benchmarks are ~10^5
rows, which a flat index searches in milliseconds per batch, and an exact index gives the same
neighbours in every run, which an IVF/HNSW index does not promise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nemo_taskseed.filter.decontam.ngrams import BenchmarkRow

# Scores are rounded before they are compared or reported: the float sums of an embedding depend
# slightly on how the texts were batched (padding), and evidence must be the same in every run.
SCORE_DECIMALS = 4


def flat_index(vectors: np.ndarray):
    """An exact faiss inner-product index over `vectors` (float32 [n, dim], normalized: scores are
    cosine similarities): the one index semantic dedup, the diversity metrics and this module use."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


@dataclass(frozen=True)
class SemanticHit:
    row: BenchmarkRow
    text: str  # the benchmark item as embedded (the view that matched)
    score: float  # cosine similarity, rounded
    view: str = "prompt"  # which view of the row matched (filter/semantic/views.py)


class SemanticIndex:
    """One vector per (benchmark row, view); a search answers with distinct rows, each by its best view."""

    def __init__(
        self,
        rows: list[BenchmarkRow],
        texts: list[str],
        vectors: np.ndarray,
        views: list[str] | None = None,
    ):
        import faiss

        views = views if views is not None else ["prompt"] * len(rows)
        if not len(rows) == len(texts) == len(vectors) == len(views):
            raise ValueError("rows, texts, views and vectors differ in length")
        self.rows, self.texts, self.views = rows, texts, views
        self.dim = int(vectors.shape[1]) if len(vectors) else 0
        self._index = flat_index(vectors) if len(vectors) else faiss.IndexFlatIP(1)

    def __len__(self) -> int:
        return len(self.rows)

    def search(self, vectors: np.ndarray, k: int = 1) -> list[list[SemanticHit]]:
        """The k nearest benchmark rows of each vector, best first, each row once with its best view
        (ties: the earlier indexed vector)."""
        if not len(self.rows) or not len(vectors):
            return [[] for _ in range(len(vectors))]
        # A row has up to three views: ask for enough vectors to return k distinct rows.
        want = min(int(k) * 3, len(self.rows))
        scores, ids = self._index.search(np.ascontiguousarray(vectors, dtype=np.float32), want)
        out = []
        for srow, irow in zip(scores, ids):
            ranked = sorted(
                ((round(float(s), SCORE_DECIMALS), int(i)) for s, i in zip(srow, irow) if i >= 0),
                key=lambda h: (-h[0], h[1]),
            )
            hits, seen = [], set()
            for s, i in ranked:
                if self.rows[i] in seen:
                    continue
                seen.add(self.rows[i])
                hits.append(SemanticHit(self.rows[i], self.texts[i], s, self.views[i]))
                if len(hits) == k:
                    break
            out.append(hits)
        return out

    def save(self, prefix: Path) -> None:
        import faiss

        from nemo_taskseed.utils.jsonl import atomic_path

        prefix = Path(prefix)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(prefix.with_suffix(".faiss")) as tmp:
            faiss.write_index(self._index, str(tmp))
        meta = {
            "rows": [[r.benchmark, r.split, r.row] for r in self.rows],
            "texts": self.texts,
            "views": self.views,
            "dim": self.dim,
        }
        with atomic_path(prefix.with_suffix(".json")) as tmp:
            Path(tmp).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, prefix: Path) -> SemanticIndex:
        import faiss

        prefix = Path(prefix)
        meta = json.loads(prefix.with_suffix(".json").read_text(encoding="utf-8"))
        self = cls.__new__(cls)
        self.rows = [BenchmarkRow(b, s, int(r)) for b, s, r in meta["rows"]]
        self.texts = list(meta["texts"])
        self.views = list(meta["views"])
        self.dim = int(meta["dim"])
        self._index = faiss.read_index(str(prefix.with_suffix(".faiss")))
        return self
