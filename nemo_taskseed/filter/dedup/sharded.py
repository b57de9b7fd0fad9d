"""Exact and fuzzy dedup over every shard, with memory bounded per item and band.

Dedup needs all records at once, so it is split the way Curator's GPU workflows split it
(identify, then remove), on CPU:

1. per shard, in parallel (`signatures_for`, called by the filter's signature stage): for each
   item (one per `lineage.item_id`: variants repeat their question on purpose) an exact-text hash,
   a MinHash signature (datasketch's `MinHash.bulk`) and one 64-bit hash per LSH band, saved as
   numpy files beside the shard's other intermediate outputs; seeds get the same as references;
2. once, on the driver (`resolve`): group by exact hash, then band by band by band hash (a sort:
   16 bytes per item for the band in memory, plus ~25 bytes per item of keys), confirm candidate
   pairs with the signatures' Jaccard estimate read from memory-mapped files, and resolve
   clusters greedily in item-id order;
3. per shard, in parallel: the filter drops what step 2 listed.

Identity and order come from the item id (a 16-hex content hash), never from file order, shard
size, executor or worker count, so the same records always keep the same survivors. Greedy rule
(the one the old streaming index applied in file order): an item that matches a seed is a copy of
that seed; otherwise, walking items by id, an item is dropped when it matches an item kept before
it. Curator's cudf workflows (`filter.dedup.backend: gpu`, `dedup/gpu.py`) stay selectable.

Curator 1.x has no CPU dedup, and datasketch's `MinHashLSH` holds every signature in one Python
process (measured: memory grows ~1 KB per item), hence this module.
"""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nemo_taskseed.filter.text import normalize_words, record_fields_text, word_ngrams
from nemo_taskseed.utils.jsonl import atomic_path

# Bucket members paired with each other at most: a band bucket of k members makes k(k-1)/2
# candidate pairs; past this many members each is compared with the first ones by id only.
MAX_BUCKET_PAIRS_PER_ITEM = 256
_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class DedupSettings:
    """`filter.dedup.*`: which fields make "the same item", and the fuzzy parameters."""

    fields: tuple[str, ...]
    exact: bool
    fuzzy: bool
    threshold: float
    num_perm: int
    ngram_size: int
    seed: int

    @classmethod
    def from_config(cls, dedup: dict[str, Any]) -> DedupSettings:
        threshold = float(dedup["fuzzy"]["threshold"])
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"filter.dedup.fuzzy.threshold must be in (0, 1], got {threshold}")
        return cls(
            tuple(dedup["fields"]),
            bool(dedup["exact"]["enabled"]),
            bool(dedup["fuzzy"]["enabled"]),
            threshold,
            int(dedup["fuzzy"]["num_perm"]),
            int(dedup["fuzzy"]["ngram_size"]),
            int(dedup["fuzzy"]["seed"]),
        )

    def bands(self) -> tuple[int, int]:
        """(bands, rows per band): datasketch's optimum for the threshold, as `MinHashLSH` picks it."""
        return _lsh_params(self.threshold, self.num_perm)


@functools.lru_cache(maxsize=16)
def _lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    from datasketch.lsh import _optimal_param  # numerical integration: ~0.4 s a call, so cached

    return _optimal_param(threshold, num_perm, 0.5, 0.5)


def key_of(identifier: str) -> int:
    """The 64-bit identity and order key of an item or seed id (16 hex digits as themselves)."""
    text = str(identifier)
    if len(text) == 16:
        try:
            return int(text, 16)
        except ValueError:
            pass
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def id_of(key: int) -> str:
    return f"{int(key):016x}"


def shingles(text: str, ngram_size: int) -> list[bytes]:
    """Distinct word n-grams of the normalized text; a text shorter than n is one shingle."""
    words = normalize_words(text)
    if not words:
        return []
    if len(words) < ngram_size:
        return [" ".join(words).encode("utf-8")]
    return [s.encode("utf-8") for s in set(word_ngrams(words, ngram_size))]


def exact_hash(text: str) -> int:
    """blake2b of the normalized text (0 = no text: never a duplicate)."""
    norm = " ".join(normalize_words(text))
    if not norm:
        return 0
    return int.from_bytes(hashlib.blake2b(norm.encode("utf-8"), digest_size=8).digest(), "big") or 1


def minhash_signatures(texts: Sequence[str], settings: DedupSettings, chunk: int = 2048) -> np.ndarray:
    """uint32 [n, num_perm]; all-zero rows for texts without words. datasketch's values are < 2^32."""
    from datasketch import MinHash

    out = np.zeros((len(texts), settings.num_perm), dtype=np.uint32)
    for start in range(0, len(texts), chunk):  # chunks: shingle lists of a whole shard alive at once slow the GC
        sh = [shingles(t, settings.ngram_size) for t in texts[start : start + chunk]]
        rows = [i for i, s in enumerate(sh) if s]
        if rows:
            for i, m in zip(rows, MinHash.bulk([sh[i] for i in rows], num_perm=settings.num_perm, seed=settings.seed)):
                out[start + i] = m.hashvalues
    return out


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64 [bands, n]: one hash per band of each signature (band-major, so one band is one
    contiguous read). Multiply-xor mixing in uint64 arithmetic; a collision only makes a
    candidate pair, which the Jaccard check then rejects."""
    n = sig.shape[0]
    out = np.empty((bands, n), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for b in range(bands):
            acc = np.full(n, np.uint64(b + 1) * _MIX, dtype=np.uint64)
            for v in sig[:, b * rows : (b + 1) * rows].T.astype(np.uint64):
                acc = (acc ^ v) * _MIX
                acc ^= acc >> np.uint64(29)
            out[b] = acc
    return out


@dataclass
class ShardSignatures:
    """What one shard contributes to dedup; saved as `<prefix>.keys.npz`, `.sig.npy`, `.bands.npy`."""

    key: np.ndarray  # uint64: item id (seeds: seed id)
    seed_key: np.ndarray  # uint64: the item's own seed (seeds: themselves)
    is_seed: np.ndarray  # bool
    exact: np.ndarray  # uint64, 0 = no text
    sig: np.ndarray  # uint32 [n, num_perm]
    bands: np.ndarray  # uint64 [bands, n]

    def save(self, prefix: Path) -> list[Path]:
        prefix.parent.mkdir(parents=True, exist_ok=True)
        paths = [Path(f"{prefix}.keys.npz"), Path(f"{prefix}.sig.npy"), Path(f"{prefix}.bands.npy")]
        writers = [
            lambda f: np.savez(f, key=self.key, seed_key=self.seed_key, is_seed=self.is_seed, exact=self.exact),
            lambda f: np.save(f, self.sig),
            lambda f: np.save(f, self.bands),
        ]
        for path, write in zip(paths, writers):
            with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # a file object: numpy adds no suffix
                write(handle)
        return paths


def signatures_for(
    items: Sequence[tuple[str, str, dict[str, Any]]], settings: DedupSettings, *, seeds: bool = False
) -> ShardSignatures:
    """`items` are (id, own seed id, record): one entry per item (or per seed with `seeds=True`)."""
    texts = [" ".join(record_fields_text(rec, settings.fields)) for _, _, rec in items]
    n = len(items)
    b, r = settings.bands()
    sig = minhash_signatures(texts, settings) if settings.fuzzy else np.zeros((n, settings.num_perm), np.uint32)
    return ShardSignatures(
        key=np.array([key_of(i) for i, _, _ in items], dtype=np.uint64),
        seed_key=np.array([key_of(s) for _, s, _ in items], dtype=np.uint64),
        is_seed=np.full(n, seeds, dtype=bool),
        exact=np.array([exact_hash(t) for t in texts], dtype=np.uint64),
        sig=sig,
        bands=band_hashes(sig, b, r) if settings.fuzzy else np.zeros((b, n), np.uint64),
    )


@dataclass(frozen=True)
class Drop:
    reason: str  # exact_duplicate | exact_copy_of_seed | near_duplicate | near_copy_of_seed
    stage: str  # exact_dedup | fuzzy_dedup
    detail: dict[str, Any]


class _Shards:
    """The shards' signature files as one virtual array of items (global index = row in order)."""

    def __init__(self, prefixes: Sequence[Path]):
        self.prefixes = list(prefixes)
        keys = [np.load(f"{p}.keys.npz") for p in self.prefixes]
        self.sizes = np.array([len(k["key"]) for k in keys], dtype=np.int64)
        self.offsets = np.concatenate(([0], np.cumsum(self.sizes)))

        def cat(name, dtype):
            return np.concatenate([k[name] for k in keys]) if keys else np.zeros(0, dtype)

        self.key, self.seed_key = cat("key", np.uint64), cat("seed_key", np.uint64)
        self.is_seed, self.exact = cat("is_seed", bool), cat("exact", np.uint64)
        self._sig = [np.load(f"{p}.sig.npy", mmap_mode="r") for p in self.prefixes]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def band(self, b: int) -> np.ndarray:
        return (
            np.concatenate([np.load(f"{p}.bands.npy", mmap_mode="r")[b] for p in self.prefixes])
            if self.prefixes
            else np.zeros(0, np.uint64)
        )

    def jaccard(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """MinHash Jaccard estimate (share of equal values, as datasketch's `MinHash.jaccard`) per pair."""
        return (self._rows(a) == self._rows(b)).mean(axis=1) if len(a) else np.zeros(0)

    def _rows(self, index: np.ndarray) -> np.ndarray:
        shard = np.searchsorted(self.offsets, index, side="right") - 1
        out = np.empty((len(index), self._sig[0].shape[1] if self._sig else 0), dtype=np.uint32)
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = self._sig[s][index[sel] - self.offsets[s]]
        return out

    def shard_of(self, index: int) -> int:
        return int(np.searchsorted(self.offsets, index, side="right") - 1)


def resolve(
    prefixes: Sequence[Path], settings: DedupSettings, excluded_seed_keys: set[int] | frozenset[int] = frozenset()
) -> dict[int, dict[int, Drop]]:
    """{shard position in `prefixes`: {item key: Drop}} for every generated item to drop.

    Items whose own seed is in `excluded_seed_keys` (contaminated seeds: dropped anyway) take no
    part, so a cluster never keeps one of them in place of a clean member.
    """
    data = _Shards(prefixes)
    n = len(data)
    alive = np.ones(n, dtype=bool)  # generated items still kept, and every seed (references)
    if excluded_seed_keys:
        excluded = np.array(sorted(excluded_seed_keys), dtype=np.uint64)
        alive &= ~(np.isin(data.seed_key, excluded) & ~data.is_seed)
    drops: dict[int, Drop] = {}
    if settings.exact and n:
        _exact(data, alive, drops)
    if settings.fuzzy and n:
        _fuzzy(data, alive, drops, settings)
    by_shard: dict[int, dict[int, Drop]] = defaultdict(dict)
    for index, drop in drops.items():
        by_shard[data.shard_of(index)][int(data.key[index])] = drop
    return dict(by_shard)


def _runs(sorted_values: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of >= 2 equal values in a sorted array."""
    if len(sorted_values) < 2:
        return []
    change = np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [len(sorted_values)]))
    keep = ends - starts >= 2
    return list(zip(starts[keep].tolist(), ends[keep].tolist()))


def _exact(data: _Shards, alive: np.ndarray, drops: dict[int, Drop]) -> None:
    idx = np.flatnonzero(data.exact != 0)
    # by hash, seeds first, then item id: the first member of a group is what the others repeat
    idx = idx[np.lexsort((data.key[idx], ~data.is_seed[idx], data.exact[idx]))]
    for start, end in _runs(data.exact[idx]):
        group = idx[start:end]
        seeds = group[data.is_seed[group]]
        for member in group[~data.is_seed[group]]:
            if len(seeds):
                own = seeds[data.key[seeds] == data.seed_key[member]]
                match = int((own if len(own) else seeds)[0])
                drops[int(member)] = Drop(
                    "exact_copy_of_seed",
                    "exact_dedup",
                    {"match_id": id_of(data.key[match]), "own_seed": bool(len(own))},
                )
                alive[member] = False
            elif member != group[0]:
                drops[int(member)] = Drop("exact_duplicate", "exact_dedup", {"match_id": id_of(data.key[group[0]])})
                alive[member] = False


def _fuzzy(data: _Shards, alive: np.ndarray, drops: dict[int, Drop], settings: DedupSettings) -> None:
    bands, _ = settings.bands()
    # items without words have no shingles (all-zero signatures): never near anything
    candidates = np.flatnonzero(alive & (data.exact != 0))
    pairs: list[np.ndarray] = []
    for b in range(bands):
        hashes = data.band(b)[candidates]
        by_hash = np.lexsort((data.key[candidates], hashes))
        members_sorted, hashes = candidates[by_hash], hashes[by_hash]
        for start, end in _runs(hashes):
            members = members_sorted[start:end]
            i, j = np.triu_indices(len(members), 1)
            if len(members) > MAX_BUCKET_PAIRS_PER_ITEM:  # compare each member with the first ones only
                keep = i < MAX_BUCKET_PAIRS_PER_ITEM
                i, j = i[keep], j[keep]
            pairs.append(np.stack([members[i], members[j]], axis=1))
    if not pairs:
        return
    pair = np.unique(np.concatenate(pairs), axis=0)
    # no pairs among seeds: they are references, never dropped
    pair = pair[~(data.is_seed[pair[:, 0]] & data.is_seed[pair[:, 1]])]
    jac = data.jaccard(pair[:, 0], pair[:, 1])
    ok = jac >= settings.threshold
    pair, jac = pair[ok], jac[ok]

    seed_match: dict[int, tuple[float, bool, int, int]] = {}
    neighbours: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for (a, b), j in zip(pair.tolist(), jac.tolist()):
        sa, sb = bool(data.is_seed[a]), bool(data.is_seed[b])
        if sa or sb:
            seed, item = (a, b) if sa else (b, a)
            own = bool(data.key[seed] == data.seed_key[item])
            best = (j, own, -int(data.key[seed]), seed)  # highest Jaccard, own seed, smaller id
            if item not in seed_match or best > seed_match[item]:
                seed_match[item] = best
        else:
            neighbours[a].append((b, j))
            neighbours[b].append((a, j))
    for item, (j, own, _, seed) in seed_match.items():
        drops[item] = Drop(
            "near_copy_of_seed",
            "fuzzy_dedup",
            {
                "match_id": id_of(data.key[seed]),
                "jaccard": round(j, 4),
                "threshold": settings.threshold,
                "own_seed": own,
            },
        )
        alive[item] = False
    for item in sorted(neighbours, key=lambda i: int(data.key[i])):
        if not alive[item]:
            continue
        earlier = [
            (j, -int(data.key[other]), other)
            for other, j in neighbours[item]
            if alive[other] and int(data.key[other]) < int(data.key[item])
        ]
        if earlier:
            j, _, other = max(earlier)
            drops[item] = Drop(
                "near_duplicate",
                "fuzzy_dedup",
                {"match_id": id_of(data.key[other]), "jaccard": round(j, 4), "threshold": settings.threshold},
            )
            alive[item] = False
