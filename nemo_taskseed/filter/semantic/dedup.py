"""Semantic dedup: items whose embeddings are near each other (cosine >= threshold) are one item.

Against the seeds first: an item this close to any seed is a reworded copy of training data
(`semantic_copy_of_seed`). Then among the items: pairs at or above the threshold join a cluster
(union-find over an exact faiss range search, so A~B and B~C put A, B, C together); of each
cluster the item with the smallest id survives, as in the n-gram dedup. Items are sorted by id
and scores rounded before comparison, so the decision depends neither on file or shard order nor
on shard size. Options are sorted before embedding: reordering them changes nothing.

Memory: all kept item vectors at once (384 float32 per item: 150 MB per 100k items).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nemo_taskseed.filter.semantic.index import SCORE_DECIMALS
from nemo_taskseed.filter.semantic.store import Embedded


@dataclass(frozen=True)
class SemanticDrop:
    item_id: str
    reason: str
    detail: dict[str, Any]


def _flat(vectors: np.ndarray):
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def semantic_duplicates(items: Embedded, seeds: Embedded, threshold: float) -> list[SemanticDrop]:
    items = items.sorted_by_id()
    if not items.ids:
        return []
    drops: list[SemanticDrop] = []
    alive = list(range(len(items.ids)))
    if seeds.ids:
        seeds = seeds.sorted_by_id()
        scores, idx = _flat(seeds.vectors).search(items.vectors, 1)
        alive = []
        for i, (s, j) in enumerate(zip(scores[:, 0], idx[:, 0])):
            score = round(float(s), SCORE_DECIMALS)
            if j >= 0 and score >= threshold:
                drops.append(
                    SemanticDrop(
                        items.ids[i],
                        "semantic_copy_of_seed",
                        {
                            "seed_id": seeds.ids[j],
                            "own_seed": seeds.ids[j] == items.seed_ids[i],
                            "score": score,
                            "item_text": items.texts[i],
                            "seed_text": seeds.texts[j],
                        },
                    )
                )
            else:
                alive.append(i)
    rest = items.select(alive)
    if len(rest.ids) < 2:
        return drops
    # Radius a hair below the threshold: the rounded score decides, as everywhere else.
    lims, dist, nbr = _flat(rest.vectors).range_search(rest.vectors, float(threshold) - 10**-SCORE_DECIMALS)
    parent = list(range(len(rest.ids)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    best: dict[int, tuple[float, int]] = {}
    for a in range(len(rest.ids)):
        for s, b in zip(dist[lims[a] : lims[a + 1]], nbr[lims[a] : lims[a + 1]]):
            b, score = int(b), round(float(s), SCORE_DECIMALS)
            if b == a or score < threshold:
                continue
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)  # ids are sorted: the smaller index is the smaller id
            if score > best.get(a, (-1.0, -1))[0] or (score == best[a][0] and b < best[a][1]):
                best[a] = (score, b)
    for a in range(len(rest.ids)):
        root = find(a)
        if root != a:
            score, b = best[a]
            drops.append(
                SemanticDrop(
                    rest.ids[a],
                    "semantic_duplicate",
                    {
                        "kept_item_id": rest.ids[root],
                        "nearest_item_id": rest.ids[b],
                        "score": score,
                        "item_text": rest.texts[a],
                        "nearest_text": rest.texts[b],
                    },
                )
            )
    return drops
