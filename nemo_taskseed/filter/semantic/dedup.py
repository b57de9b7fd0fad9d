"""Semantic dedup: items whose embeddings are near each other (cosine >= threshold) are one item.

Against the seeds first: an item this close to any seed is a reworded copy of training data
(`semantic_copy_of_seed`). Then among the items: pairs at or above the threshold join a cluster
(union-find, so A~B and B~C put A, B, C together); of each cluster the item with the smallest id
survives, as in the n-gram dedup. Items are sorted by id and scores rounded before comparison, so
the decision depends neither on file or shard order nor on shard size. Options are sorted before
embedding: reordering them changes nothing.

Two paths, one rule:

* exact (items + seeds <= `exact_max_items`, default 20,000): every vector in memory, one exact
  faiss search against all seeds and one exact range search over all item pairs. Small runs get
  exactly the decisions they always got.
* clustered (larger runs), as NeMo Curator's SemDeDup (`nemo_curator/stages/deduplication/semantic`:
  k-means over the embeddings, then pairwise similarity only inside each cluster), on CPU and
  deterministic:

  1. spherical k-means (`faiss.Kmeans`, fixed seed) with `ceil(sqrt(items))` centroids (or
     `ceil(items / cluster_size)`), trained on `sample_per_cluster` items per centroid chosen by a
     hash of the item id (never by file order), in id order. sqrt: assigning costs items x
     centroids, the range searches ~ items x bucket size; both are items^1.5 at k = sqrt(items);
  2. every item and seed is assigned to its nearest centroid (float64 dot products, ties to the
     lower centroid), and also to its 2nd-nearest when that is within `second_margin` of the
     nearest; records (id key, shard, row, vector) are appended to one bucket file per centroid;
  3. bucket by bucket: items against the bucket's seeds (exact search), then the remaining items
     among themselves (exact range search + union-find, as the exact path). What one bucket finds
     is kept as a spanning forest (item -> smallest id it joined) and merged across buckets by a
     global union-find, so an item placed in two buckets links both clusters.

  Peak memory: the largest bucket (its vectors and range-search result; k-means buckets are
  uneven, the largest ~2x cluster_size) plus the centroids, one shard's vectors while assigning,
  9 bytes per item (id key and keep flag) and ~100 bytes per item that has a near copy. Measured
  (bench/bench_decontam.py, docs/benchmarks.md): see docs/decontamination.md.
  Compute: items x centroids for the assignment plus sum(bucket size^2) for the range searches,
  instead of items^2. A pair split across buckets is missed (measured recall vs the exact path in
  docs/decontamination.md); the clustered path orders ids by their 64-bit key (`dedup.sharded.key_of`),
  which is their string order for item ids (16 hex digits).

`semantic_duplicates` takes vectors in memory (and picks the path by size); `semantic_duplicates_sharded`
reads the per-shard files the semantic stage saved (`store.py`), one shard at a time.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from nemo_taskseed.config import section_settings
from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.checks import register_check
from nemo_taskseed.filter.dedup.sharded import key_of
from nemo_taskseed.filter.semantic.index import SCORE_DECIMALS, flat_index
from nemo_taskseed.filter.semantic.store import Embedded


@dataclass(frozen=True)
class SemanticDrop:
    item_id: str
    reason: str
    detail: dict[str, Any]
    part: int = -1  # semantic_duplicates_sharded: position of the item's shard in `item_prefixes`


@dataclass(frozen=True)
class SemanticDedupSettings:
    """`filter.dedup.semantic.*` (configs/base/filter.yaml holds the defaults and says why)."""

    threshold: float
    exact_max_items: int
    cluster_size: int  # 0: ceil(sqrt(items)) clusters
    sample_per_cluster: int
    second_margin: float
    kmeans_iterations: int
    seed: int

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> SemanticDedupSettings:
        """From the full config or its `filter.dedup.semantic` section; `overrides` replace fields."""
        values = {**section_settings(cls, cfg, "filter.dedup.semantic", strict=True, extra=("enabled",)), **overrides}
        out = cls(
            float(values["threshold"]),
            int(values["exact_max_items"]),
            int(values["cluster_size"]),
            int(values["sample_per_cluster"]),
            float(values["second_margin"]),
            int(values["kmeans_iterations"]),
            int(values["seed"]),
        )
        if not 0.0 < out.threshold <= 1.0:
            raise UserError(f"filter.dedup.semantic.threshold must be in (0, 1], got {out.threshold}")
        if out.cluster_size == 1 or out.cluster_size < 0 or out.sample_per_cluster < 1 or out.kmeans_iterations < 1:
            raise UserError(
                "filter.dedup.semantic: cluster_size 0 (auto) or >= 2, sample_per_cluster >= 1, kmeans_iterations >= 1"
            )
        if out.second_margin < 0:
            raise UserError(f"filter.dedup.semantic.second_margin must be >= 0, got {out.second_margin}")
        return out


def _rounded(score: float) -> float:
    return round(float(score), SCORE_DECIMALS)


# -- entry points ------------------------------------------------------------------------------


def semantic_duplicates(
    items: Embedded,
    seeds: Embedded,
    settings: SemanticDedupSettings,
    threshold: float | None = None,
    *,
    work_dir: Path | None = None,
) -> list[SemanticDrop]:
    """Drops among `items` (vectors in memory): the exact path up to `settings.exact_max_items`
    items + seeds, the clustered one above (bucket files in `work_dir`, else a temporary folder);
    `threshold` replaces the settings' own."""
    if threshold is not None:
        settings = replace(settings, threshold=float(threshold))
    if len(items.ids) + len(seeds.ids) <= settings.exact_max_items:
        return _exact(items, seeds, settings.threshold)
    return _clustered([_MemoryPart(items)], [_MemoryPart(seeds)], settings, work_dir)


def semantic_duplicates_sharded(
    item_prefixes: Sequence[Path],
    seed_prefixes: Sequence[Path],
    settings: SemanticDedupSettings,
    work_dir: Path,
    *,
    excluded_items: Mapping[int, set[str]] | None = None,
    excluded_seeds: set[str] | frozenset[str] = frozenset(),
) -> list[SemanticDrop]:
    """Drops from the semantic stage's per-shard files (`<prefix>.npy/.json`), each tagged with the
    position of its shard in `item_prefixes`. Items listed in `excluded_items[position]` (dropped
    already), and items whose own seed is in `excluded_seeds` (contaminated seeds, which take no part
    either), are left out. Vectors and metadata are read one shard at a time."""
    excluded_items = excluded_items or {}
    items = [
        _FilePart(Path(p), excluded_items.get(k, set()), excluded_seeds, False) for k, p in enumerate(item_prefixes)
    ]
    seeds = [_FilePart(Path(p), set(), excluded_seeds, True) for p in seed_prefixes]
    total = sum(p.count for p in items) + sum(p.count for p in seeds)
    if total <= settings.exact_max_items:
        # exact path: everything kept fits; `part` is recovered from the ids.
        owner = {}
        loaded = []
        for k, part in enumerate(items):
            e = part.embedded()
            owner.update((i, k) for i in e.ids)
            loaded.append(e)
        drops = _exact(Embedded.concat(loaded), Embedded.concat([p.embedded() for p in seeds]), settings.threshold)
        return [SemanticDrop(d.item_id, d.reason, d.detail, owner[d.item_id]) for d in drops]
    work_dir = Path(work_dir)
    return _clustered(items, seeds, settings, work_dir)


# -- exact path (all vectors at once) ---------------------------------------------------------


def _exact(items: Embedded, seeds: Embedded, threshold: float) -> list[SemanticDrop]:
    items = items.sorted_by_id()
    if not items.ids:
        return []
    drops: list[SemanticDrop] = []
    alive = list(range(len(items.ids)))
    if seeds.ids:
        seeds = seeds.sorted_by_id()
        scores, idx = flat_index(seeds.vectors).search(np.ascontiguousarray(items.vectors, dtype=np.float32), 1)
        alive = []
        for i, (s, j) in enumerate(zip(scores[:, 0], idx[:, 0])):
            score = _rounded(s)
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
    parent, best = _cluster_pairs(rest.vectors, threshold)
    for a in range(len(rest.ids)):
        root = _find(parent, a)
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


def _find(parent: list[int] | dict[int, int], a: int) -> int:
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


def _cluster_pairs(vectors: np.ndarray, threshold: float) -> tuple[list[int], dict[int, tuple[float, int]]]:
    """Union-find over the pairs of `vectors` (in id order) at or above the threshold: (parent,
    {member: (best rounded score, its neighbour)}), the smaller index always the root."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    # Radius a hair below the threshold: the rounded score decides, as everywhere else.
    lims, dist, nbr = flat_index(vectors).range_search(vectors, float(threshold) - 10**-SCORE_DECIMALS)
    parent = list(range(len(vectors)))
    best: dict[int, tuple[float, int]] = {}
    rows = np.repeat(np.arange(len(vectors)), np.diff(lims.astype(np.int64)))
    candidate = np.flatnonzero(rows != nbr)
    for a, b, s in zip(rows[candidate].tolist(), nbr[candidate].tolist(), dist[candidate].tolist()):
        score = _rounded(s)
        if score < threshold:
            continue
        ra, rb = _find(parent, a), _find(parent, b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # ids are sorted: the smaller index is the smaller id
        if score > best.get(a, (-1.0, -1))[0] or (score == best[a][0] and b < best[a][1]):
            best[a] = (score, b)
    return parent, best


# -- clustered path ----------------------------------------------------------------------------


class _MemoryPart:
    """Vectors already in memory (`semantic_duplicates`)."""

    def __init__(self, emb: Embedded):
        self.emb = emb
        self.count = len(emb.ids)
        self.keys = np.array([key_of(i) for i in emb.ids], dtype=np.uint64)
        self.keep = np.ones(self.count, dtype=bool)

    def vectors(self) -> np.ndarray:
        return self.emb.vectors

    def meta(self) -> Embedded:
        return self.emb


class _FilePart:
    """One shard's `<prefix>.npy/.json`: keys and keep flags in memory (9 bytes per item), vectors
    read when needed, ids/texts read again only for the drops."""

    def __init__(self, prefix: Path, excluded: set[str], excluded_seeds: set[str] | frozenset[str], is_seed: bool):
        self.prefix = prefix
        meta = self._read_meta()
        ids, seed_ids = meta["ids"], meta["seed_ids"]
        self.keys = np.array([key_of(i) for i in ids], dtype=np.uint64)
        if is_seed:
            self.keep = np.array([i not in excluded_seeds for i in ids], dtype=bool)
        else:
            self.keep = np.array([i not in excluded and s not in excluded_seeds for i, s in zip(ids, seed_ids)], bool)
        self.count = int(self.keep.sum())

    def _read_meta(self) -> dict[str, Any]:
        return json.loads(Path(f"{self.prefix}.json").read_text(encoding="utf-8"))

    def vectors(self) -> np.ndarray:
        # Read whole (one shard at a time, freed after use), not memory-mapped: mapped pages that were
        # read stay in the process's RSS until the kernel needs them, which hides the real peak.
        return np.load(f"{self.prefix}.npy")

    def meta(self) -> Embedded:
        m = self._read_meta()
        return Embedded(m["ids"], m["seed_ids"], m["families"], m["texts"], np.zeros((0, 0), np.float32))

    def embedded(self) -> Embedded:
        m = self._read_meta()
        full = Embedded(m["ids"], m["seed_ids"], m["families"], m["texts"], np.load(f"{self.prefix}.npy"))
        return full.select(np.flatnonzero(self.keep).tolist())


def mix64(keys: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: a uniform hash of the id key (the sample must not follow id order)."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _record_dtype(dim: int) -> np.dtype:
    return np.dtype([("key", "<u8"), ("part", "<i4"), ("row", "<i4"), ("seed", "u1"), ("vec", "<f4", (dim,))])


def _dim(parts: Sequence[Any]) -> int:
    for p in parts:
        if p.count:
            v = p.vectors()
            if v.ndim == 2 and v.shape[1]:
                return int(v.shape[1])
    return 0


def train_centroids(parts: Sequence[Any], settings: SemanticDedupSettings) -> np.ndarray:
    """Spherical k-means centroids (float32 [k, dim]) from a sample chosen by id hash, in id order."""
    import faiss

    n = sum(p.count for p in parts)
    k = max(1, math.ceil(n / settings.cluster_size) if settings.cluster_size else math.ceil(math.sqrt(n)))
    want = min(n, k * settings.sample_per_cluster)
    cutoff = np.uint64(min(2**64 - 1, int(want / max(n, 1) * 2**64)))
    keys, vecs = [], []
    for p in parts:
        if not p.count:
            continue
        take = np.flatnonzero(p.keep & (mix64(p.keys) <= cutoff))
        if len(take):
            keys.append(p.keys[take])
            vecs.append(np.asarray(p.vectors()[take], dtype=np.float32))
    if not keys:
        raise ValueError("semantic dedup: no item vectors to train centroids on")
    key = np.concatenate(keys)
    order = np.argsort(key, kind="stable")
    sample = np.ascontiguousarray(np.concatenate(vecs)[order])
    k = min(k, len(sample))
    km = faiss.Kmeans(
        sample.shape[1],
        k,
        niter=settings.kmeans_iterations,
        seed=settings.seed,
        spherical=True,
        verbose=False,
        max_points_per_centroid=max(256, settings.sample_per_cluster),
        min_points_per_centroid=1,
    )
    km.train(sample)
    centroids = np.asarray(km.centroids, dtype=np.float32).reshape(k, -1)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    return centroids / np.where(norms > 0, norms, 1)


def assign(vectors: np.ndarray, centroids: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(nearest centroid, 2nd-nearest or -1) per vector. float64 dot products, so that the same
    vector gets the same centroid whatever else is in its batch; ties go to the lower centroid."""
    scores = np.asarray(vectors, dtype=np.float64) @ centroids.astype(np.float64).T
    first = np.argmax(scores, axis=1)
    if centroids.shape[0] < 2 or margin <= 0:
        return first, np.full(len(first), -1, dtype=np.int64)
    top = scores[np.arange(len(first)), first]
    scores[np.arange(len(first)), first] = -np.inf
    second = np.argmax(scores, axis=1)
    close = top - scores[np.arange(len(first)), second] <= margin
    return first, np.where(close, second, -1)


def _write_buckets(
    parts: Sequence[Any],
    is_seed: bool,
    offset: int,
    centroids: np.ndarray,
    settings: SemanticDedupSettings,
    folder: Path,
) -> int:
    """Append every kept vector of `parts` to its centroid's bucket file(s); returns records written."""
    dtype = _record_dtype(centroids.shape[1])
    # rows per chunk: the [chunk, k] float64 score matrix stays under ~64 MB
    chunk = max(256, (8 << 20) // max(1, centroids.shape[0]))
    written = 0
    for pos, p in enumerate(parts):
        if not p.count:
            continue
        rows_all = np.flatnonzero(p.keep)
        vectors = p.vectors()
        for start in range(0, len(rows_all), chunk):
            rows = rows_all[start : start + chunk]
            vec = np.asarray(vectors[rows], dtype=np.float32)
            first, second = assign(vec, centroids, settings.second_margin)
            extra = np.flatnonzero(second >= 0)
            which = np.concatenate([np.arange(len(rows)), extra])
            cluster = np.concatenate([first, second[extra]])
            rec = np.empty(len(which), dtype=dtype)
            rec["key"], rec["part"], rec["row"] = p.keys[rows[which]], offset + pos, rows[which]
            rec["seed"], rec["vec"] = is_seed, vec[which]
            order = np.argsort(cluster, kind="stable")
            rec, cluster = rec[order], cluster[order]
            bounds = np.flatnonzero(np.diff(cluster)) + 1
            for lo, hi in zip(np.concatenate(([0], bounds)), np.concatenate((bounds, [len(cluster)]))):
                with open(folder / f"{int(cluster[lo]):06d}.bin", "ab") as handle:
                    handle.write(rec[lo:hi].tobytes())
            written += len(rec)
    return written


@dataclass
class _Found:
    """What the buckets found, by id key (only items that match something)."""

    seed_hit: dict[int, tuple[float, int, int, int, int, int]] = field(default_factory=dict)
    # item key -> (raw score, -seed key, item part, item row, seed part, seed row)
    parent: dict[int, int] = field(default_factory=dict)
    best: dict[int, tuple[float, int]] = field(default_factory=dict)  # item key -> (score, nearest key)
    where: dict[int, tuple[int, int]] = field(default_factory=dict)  # item key -> (part, row)
    stats: dict[str, Any] = field(default_factory=dict)

    def union(self, a: int, b: int) -> None:
        for x in (a, b):
            self.parent.setdefault(x, x)
        ra, rb = _find(self.parent, a), _find(self.parent, b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _read_bucket(path: Path, dtype: np.dtype) -> np.ndarray:
    rec = np.fromfile(path, dtype=dtype)
    return rec[np.argsort(rec["key"], kind="stable")]


def _resolve_buckets(folder: Path, dim: int, threshold: float, found: _Found) -> None:
    dtype = _record_dtype(dim)
    paths = sorted(folder.glob("*.bin"))
    sizes = []
    # 1. items against the seeds of their bucket(s): best seed over all of an item's buckets
    for path in paths:
        rec = _read_bucket(path, dtype)
        seeds, items = rec[rec["seed"] == 1], rec[rec["seed"] == 0]
        sizes.append(len(items))
        if not len(seeds) or not len(items):
            continue
        scores, idx = flat_index(seeds["vec"]).search(np.ascontiguousarray(items["vec"]), 1)
        for i, (s, j) in enumerate(zip(scores[:, 0].tolist(), idx[:, 0].tolist())):
            if j < 0 or _rounded(s) < threshold:
                continue
            key = int(items["key"][i])
            hit = (float(s), -int(seeds["key"][j]), int(items["part"][i]), int(items["row"][i]))
            hit += (int(seeds["part"][j]), int(seeds["row"][j]))
            old = found.seed_hit.get(key)
            if old is None or hit[:2] > old[:2]:
                found.seed_hit[key] = hit
    copies = np.array(sorted(found.seed_hit), dtype=np.uint64)
    # 2. the other items among themselves, bucket by bucket
    for path in paths:
        rec = _read_bucket(path, dtype)
        items = rec[(rec["seed"] == 0) & ~np.isin(rec["key"], copies)]
        if len(items) < 2:
            continue
        parent, best = _cluster_pairs(items["vec"], threshold)
        keys = items["key"].tolist()
        for a, (score, b) in best.items():
            ka, kb = keys[a], keys[b]
            found.where.setdefault(ka, (int(items["part"][a]), int(items["row"][a])))
            found.where.setdefault(kb, (int(items["part"][b]), int(items["row"][b])))
            found.union(ka, keys[_find(parent, a)])
            old = found.best.get(ka)
            if old is None or score > old[0] or (score == old[0] and kb < old[1]):
                found.best[ka] = (score, kb)
    found.stats.update(
        buckets=len(paths),
        largest_bucket=max(sizes, default=0),
        bucket_items=int(sum(sizes)),
    )


def _clustered(
    items: Sequence[Any], seeds: Sequence[Any], settings: SemanticDedupSettings, work_dir: Path | None
) -> list[SemanticDrop]:
    n = sum(p.count for p in items)
    if n == 0:
        return []
    dim = _dim(items)
    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="semdedup-")
        folder = Path(tmp.name)
    else:
        folder = Path(work_dir)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    try:
        centroids = train_centroids(items, settings)
        _write_buckets(items, False, 0, centroids, settings, folder)
        _write_buckets(seeds, True, len(items), centroids, settings, folder)
        found = _Found()
        _resolve_buckets(folder, dim, settings.threshold, found)
        found.stats.update(items=n, centroids=int(centroids.shape[0]))
        LAST_STATS.clear()
        LAST_STATS.update(found.stats)
        return _drops(items, seeds, found)
    finally:
        if tmp is not None:
            tmp.cleanup()
        else:
            shutil.rmtree(folder, ignore_errors=True)


LAST_STATS: dict[str, Any] = {}  # of the last clustered run: buckets, largest bucket, ... (bench, tests)


def _drops(items: Sequence[Any], seeds: Sequence[Any], found: _Found) -> list[SemanticDrop]:
    """The drops in id order (seed copies, then duplicates), with ids and texts read back per shard."""
    parts = list(items) + list(seeds)
    dup = {k: _find(found.parent, k) for k in found.parent}
    dup = {k: r for k, r in dup.items() if r != k}
    need: dict[int, set[int]] = {}
    for _, _, ip, ir, sp, sr in found.seed_hit.values():
        need.setdefault(ip, set()).add(ir)
        need.setdefault(sp, set()).add(sr)
    for k, r in dup.items():
        for key in (k, r, found.best[k][1]):
            p, row = found.where[key]
            need.setdefault(p, set()).add(row)
    rows: dict[tuple[int, int], tuple[str, str, str]] = {}  # (part, row) -> (id, seed id, text)
    for p in sorted(need):
        meta = parts[p].meta()
        for row in need[p]:
            rows[(p, row)] = (meta.ids[row], meta.seed_ids[row], meta.texts[row])
    out: list[SemanticDrop] = []
    for key in sorted(found.seed_hit):
        score, _, ip, ir, sp, sr = found.seed_hit[key]
        item_id, own, text = rows[(ip, ir)]
        seed_id, _, seed_text = rows[(sp, sr)]
        detail = {
            "seed_id": seed_id,
            "own_seed": seed_id == own,
            "score": _rounded(score),
            "item_text": text,
            "seed_text": seed_text,
        }
        out.append(SemanticDrop(item_id, "semantic_copy_of_seed", detail, ip if ip < len(items) else -1))
    for key in sorted(dup):
        score, nearest = found.best[key]
        p, row = found.where[key]
        item_id, _, text = rows[(p, row)]
        kept_id = rows[found.where[dup[key]]][0]
        nearest_id, _, nearest_text = rows[found.where[nearest]]
        detail = {
            "kept_item_id": kept_id,
            "nearest_item_id": nearest_id,
            "score": score,
            "item_text": text,
            "nearest_text": nearest_text,
        }
        out.append(SemanticDrop(item_id, "semantic_duplicate", detail, p))
    return out


# Decided in the resolve phase from the embeddings the semantic stage saved (filter/resolve.py).
register_check(
    "semantic_dedup",
    phase="resolve",
    order=90,
    section="dedup.semantic",
    report_column="deduped",
    enabled=lambda s: s.semantic_dedup_on,
)(None)
