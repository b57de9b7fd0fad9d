"""Diversity and novelty of the kept items, per family (quality report + a plot).

  distinct_1 / distinct_2  unique word 1-/2-grams over all n-grams of the family's questions+options
                           (normalized words; higher = less repetitive)
  mean_nn_similarity       mean over items of the cosine similarity to the nearest OTHER item of
                           the same family (lower = more diverse)
  mean_seed_similarity     mean cosine similarity of each item to its own seed (lower = further
                           from what it was made from: novelty)
  closer_to_other_seed     share of items whose nearest seed (of all seeds) is not their own
                           (the model drifted toward another seed's content)
Computed on the items that passed screening and dedup (before verification), from the
embeddings the semantic stage already made.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from nemo_taskseed.filter.semantic.store import Embedded
from nemo_taskseed.filter.text import normalize_words, word_ngrams


def distinct_n(texts: list[str], n: int) -> float | None:
    grams = [g for t in texts for g in word_ngrams(normalize_words(t), n)]
    return round(len(set(grams)) / len(grams), 4) if grams else None


def _flat(vectors: np.ndarray):
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def diversity_metrics(items: Embedded, seeds: Embedded) -> dict[str, dict[str, Any]]:
    items, seeds = items.sorted_by_id(), seeds.sorted_by_id()
    by_family: dict[str, list[int]] = defaultdict(list)
    for i, fam in enumerate(items.families):
        by_family[fam].append(i)
    seed_pos = {sid: j for j, sid in enumerate(seeds.ids)}
    nearest_seed = _flat(seeds.vectors).search(items.vectors, 1)[1][:, 0] if seeds.ids and items.ids else None
    out: dict[str, dict[str, Any]] = {}
    for fam in sorted(by_family):
        idx = by_family[fam]
        vecs = items.vectors[idx]
        entry: dict[str, Any] = {
            "items": len(idx),
            "distinct_1": distinct_n([items.texts[i] for i in idx], 1),
            "distinct_2": distinct_n([items.texts[i] for i in idx], 2),
        }
        if len(idx) >= 2:
            scores, nbrs = _flat(vecs).search(vecs, 2)
            # The nearest other item (an exact copy may come first in place of the item itself).
            nn = [float(s[1] if n[0] == k else s[0]) for k, (s, n) in enumerate(zip(scores, nbrs))]
            entry["mean_nn_similarity"] = round(float(np.mean(nn)), 4)
        own = [(k, seed_pos[items.seed_ids[i]]) for k, i in enumerate(idx) if items.seed_ids[i] in seed_pos]
        if own:
            sims = [float(vecs[k] @ seeds.vectors[j]) for k, j in own]
            entry["mean_seed_similarity"] = round(float(np.mean(sims)), 4)
            entry["closer_to_other_seed"] = round(sum(int(nearest_seed[idx[k]]) != j for k, j in own) / len(own), 4)
            entry["items_with_seed"] = len(own)
        out[fam] = entry
    return out


def plot_diversity(metrics: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """One bar group per family: mean NN similarity, mean seed similarity, share closer to another
    seed, distinct-2. None when there is nothing to plot."""
    if not metrics:
        return None
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on a cluster node
    import matplotlib.pyplot as plt

    keys = [
        ("mean_nn_similarity", "NN similarity in family"),
        ("mean_seed_similarity", "similarity to own seed"),
        ("closer_to_other_seed", "share closer to another seed"),
        ("distinct_2", "distinct-2"),
    ]
    fams = list(metrics)
    x = np.arange(len(fams))
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(fams) + 2), 4))
    for k, (key, label) in enumerate(keys):
        ax.bar(x + k * width, [metrics[f].get(key) or 0.0 for f in fams], width, label=label)
    ax.set_xticks(x + width * (len(keys) - 1) / 2, fams, rotation=30, ha="right")
    ax.set_ylim(0, 1.3)  # room for the legend above the bars
    ax.set_title("Diversity and novelty of kept items per family")
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})  # no version string: same bytes per run
    plt.close(fig)
    return path
