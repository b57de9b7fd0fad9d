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

At scale (`diversity_from_shards`) the metrics are computed on a deterministic sample of at most
`max_items_per_family` items per family, chosen by a hash of the item id (so it depends neither on
shard size nor on file order), and the nearest seed is searched one seed shard at a time: memory
is the sample plus one shard, not every vector of the run. A family with fewer items is measured
whole, so small runs get the exact figures. Sampled figures are estimates: the nearest neighbour
inside a sample is farther than inside the whole family, so compare families at the same cap.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from nemo_taskseed.filter.dedup.sharded import key_of
from nemo_taskseed.filter.semantic.dedup import mix64
from nemo_taskseed.filter.semantic.index import flat_index
from nemo_taskseed.filter.semantic.store import Embedded
from nemo_taskseed.filter.text import normalize_words, word_ngrams


def distinct_n(texts: list[str], n: int) -> float | None:
    grams = [g for t in texts for g in word_ngrams(normalize_words(t), n)]
    return round(len(set(grams)) / len(grams), 4) if grams else None


def diversity_metrics(items: Embedded, seeds: Embedded) -> dict[str, dict[str, Any]]:
    """The metrics over items and seeds held in memory."""
    items, seeds = items.sorted_by_id(), seeds.sorted_by_id()
    seed_pos = {sid: j for j, sid in enumerate(seeds.ids)}
    nearest = flat_index(seeds.vectors).search(items.vectors, 1)[1][:, 0] if seeds.ids and items.ids else None
    nearest_ids = [seeds.ids[j] if j >= 0 else None for j in nearest] if nearest is not None else []
    own = {}
    for k, sid in enumerate(items.seed_ids):
        if sid in seed_pos:
            own[k] = float(items.vectors[k] @ seeds.vectors[seed_pos[sid]])
    return _metrics(items, own, nearest_ids)


def _hash(ids: list[str]) -> np.ndarray:
    return mix64(np.array([key_of(i) for i in ids], dtype=np.uint64))


def diversity_from_shards(
    item_prefixes: list[Path],
    seed_prefixes: list[Path],
    *,
    excluded_items: list[set[str]],
    excluded_seeds: set[str],
    max_items_per_family: int,
) -> dict[str, dict[str, Any]]:
    """The metrics from the semantic stage's per-shard files, on a sample of at most
    `max_items_per_family` items per family (smallest id hashes), reading one shard at a time."""
    items, seen = _sample_items(item_prefixes, excluded_items, excluded_seeds, max_items_per_family)
    if not items.ids:
        return {}
    best_id, own = _nearest_seeds(items, seed_prefixes, excluded_seeds)
    metrics = _metrics(items, own, best_id)
    for fam, entry in metrics.items():
        entry["sampled"] = seen[fam] > max_items_per_family
    return metrics


def _sample_items(
    item_prefixes: list[Path], excluded_items: list[set[str]], excluded_seeds: set[str], max_items_per_family: int
) -> tuple[Embedded, dict[str, int]]:
    """The kept items' sample (at most `max_items_per_family` per family, smallest id hashes),
    sorted by id, and how many kept items each family has."""
    sample: dict[str, tuple[np.ndarray, Embedded]] = {}
    seen: dict[str, int] = defaultdict(int)  # kept items per family, sampled or not
    for prefix, dropped in zip(item_prefixes, excluded_items):
        part = Embedded.load(prefix)
        keep = [
            k for k, (i, s) in enumerate(zip(part.ids, part.seed_ids)) if i not in dropped and s not in excluded_seeds
        ]
        part = part.select(keep)
        by_family: dict[str, list[int]] = defaultdict(list)
        for k, fam in enumerate(part.families):
            by_family[fam].append(k)
        for fam, rows in by_family.items():
            seen[fam] += len(rows)
            new = part.select(rows)
            hashes = _hash(new.ids)
            if fam in sample:
                hashes = np.concatenate([sample[fam][0], hashes])
                new = Embedded.concat([sample[fam][1], new])
            if len(new.ids) > max_items_per_family:
                chosen = np.sort(np.argsort(hashes, kind="stable")[:max_items_per_family])
                hashes, new = hashes[chosen], new.select(chosen.tolist())
            sample[fam] = (hashes, new)
    return Embedded.concat([sample[f][1] for f in sorted(sample)]).sorted_by_id(), seen


def _nearest_seeds(
    items: Embedded, seed_prefixes: list[Path], excluded_seeds: set[str]
) -> tuple[list[str | None], dict[int, float]]:
    """Each item's nearest seed over every seed shard, one at a time (ties: the smaller seed id, as
    one search over id-sorted seeds would give), and the own seed's similarity where known."""
    best_score = np.full(len(items.ids), -np.inf)
    best_id: list[str | None] = [None] * len(items.ids)
    own: dict[int, float] = {}
    wanted: dict[str, list[int]] = defaultdict(list)
    for k, sid in enumerate(items.seed_ids):
        wanted[sid].append(k)
    for prefix in seed_prefixes:
        seeds = Embedded.load(prefix)
        seeds = seeds.select([k for k, i in enumerate(seeds.ids) if i not in excluded_seeds]).sorted_by_id()
        if not seeds.ids:
            continue
        scores, idx = flat_index(seeds.vectors).search(items.vectors, 1)
        for k, (score, j) in enumerate(zip(scores[:, 0], idx[:, 0])):
            if j < 0:
                continue
            sid = seeds.ids[j]
            if score > best_score[k] or (score == best_score[k] and best_id[k] is not None and sid < best_id[k]):
                best_score[k], best_id[k] = score, sid
        for j, sid in enumerate(seeds.ids):
            for k in wanted.get(sid, ()):
                own[k] = float(items.vectors[k] @ seeds.vectors[j])
    return best_id, own


def _metrics(items: Embedded, own: dict[int, float], nearest_ids: list[str | None]) -> dict[str, dict[str, Any]]:
    """Per family; `own` maps an item's position to its similarity to its own seed (items whose seed
    is known), `nearest_ids` gives each item's nearest seed id."""
    by_family: dict[str, list[int]] = defaultdict(list)
    for i, fam in enumerate(items.families):
        by_family[fam].append(i)
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
            scores, nbrs = flat_index(vecs).search(vecs, 2)
            # The nearest other item (an exact copy may come first in place of the item itself).
            nn = [float(s[1] if n[0] == k else s[0]) for k, (s, n) in enumerate(zip(scores, nbrs))]
            entry["mean_nn_similarity"] = round(float(np.mean(nn)), 4)
        with_seed = [i for i in idx if i in own]
        if with_seed:
            entry["mean_seed_similarity"] = round(float(np.mean([own[i] for i in with_seed])), 4)
            closer = sum(nearest_ids[i] != items.seed_ids[i] for i in with_seed)
            entry["closer_to_other_seed"] = round(closer / len(with_seed), 4)
            entry["items_with_seed"] = len(with_seed)
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
