"""Fuzzy dedup on CPU: datasketch MinHash signatures and MinHashLSH banding.

Curator's FuzzyDeduplicationWorkflow needs cudf (GPU), so the CPU path is ours; the hashing and
banding are datasketch's. Signatures are computed with `MinHash.bulk`, which hashes all shingles
of a document at once with numpy (measured ~6x faster than calling `update` per shingle, the
usual way of using datasketch). LSH candidates are confirmed with the signature's Jaccard
estimate, so a bucket collision alone never drops a record.

Streaming, order-preserving: each item is compared with the seeds, then with the items kept so
far; only kept items enter the index, so a chain of near copies keeps its first member.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from datasketch import MinHash, MinHashLSH

from nemo_taskseed.filter.text import normalize_words, word_ngrams


def shingles(text: str, ngram_size: int) -> list[bytes]:
    """Distinct word n-grams of the normalized text; a text shorter than n is one shingle."""
    words = normalize_words(text)
    if not words:
        return []
    if len(words) < ngram_size:
        return [" ".join(words).encode("utf-8")]
    return [s.encode("utf-8") for s in set(word_ngrams(words, ngram_size))]


@dataclass(frozen=True)
class FuzzyMatch:
    position: int
    reason: str  # near_duplicate | near_copy_of_seed
    match_id: str
    jaccard: float  # MinHash estimate against the matched record


class NearDuplicateIndex:
    """Seeds as references, generated items streamed through `find`."""

    def __init__(self, threshold: float = 0.7, num_perm: int = 128, ngram_size: int = 3, seed: int = 1):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"fuzzy threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.num_perm = num_perm
        self.ngram_size = ngram_size
        self.seed = seed
        self._seed_lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._seed_sigs: dict[str, MinHash] = {}

    def signatures(self, texts: Sequence[str]) -> list[MinHash | None]:
        sh = [shingles(t, self.ngram_size) for t in texts]
        nonempty = [s for s in sh if s]
        sigs = iter(MinHash.bulk(nonempty, num_perm=self.num_perm, seed=self.seed)) if nonempty else iter(())
        return [next(sigs) if s else None for s in sh]

    def _chunked_signatures(self, texts: Sequence[str], chunk: int = 2048):
        """Signatures in chunks: shingle lists of the whole input alive at once make the
        garbage collector's full passes grow with the input (measured: 10x records, 16x time)."""
        for start in range(0, len(texts), chunk):
            yield from self.signatures(texts[start : start + chunk])

    def add_seeds(self, seeds: Iterable[tuple[str, str]]) -> int:
        """(seed_id, text) pairs; returns how many had text to index."""
        seeds = [(sid, text) for sid, text in seeds if sid not in self._seed_sigs]
        n = 0
        with self._seed_lsh.insertion_session() as session:
            for (sid, _), sig in zip(seeds, self._chunked_signatures([t for _, t in seeds])):
                if sig is not None:
                    session.insert(sid, sig)
                    self._seed_sigs[sid] = sig
                    n += 1
        return n

    def _best(self, lsh: MinHashLSH, sigs: dict[str, MinHash], sig: MinHash, prefer: str | None = None):
        best_id, best_j = None, -1.0
        for cand in lsh.query(sig):
            j = sig.jaccard(sigs[cand])
            # The own seed wins ties so the report says "own seed" when it is one.
            if j > best_j or (j == best_j and cand == prefer):
                best_id, best_j = cand, j
        return best_id, best_j

    def find(self, items: Sequence[tuple[str, str, str]]) -> list[FuzzyMatch]:
        """`items` are (id, seed_id, text); returns one FuzzyMatch per item to drop."""
        # Same banding as the seed index (its (b, r) were optimized once in __init__).
        kept_lsh = MinHashLSH(num_perm=self.num_perm, params=(self._seed_lsh.b, self._seed_lsh.r))
        kept_sigs: dict[str, MinHash] = {}
        matches = []
        for pos, ((item_id, seed_id, _), sig) in enumerate(zip(items, self._chunked_signatures([t for _, _, t in items]))):
            if sig is None:
                continue
            sid, j = self._best(self._seed_lsh, self._seed_sigs, sig, prefer=seed_id) if self._seed_sigs else (None, 0.0)
            if sid is not None and j >= self.threshold:
                matches.append(FuzzyMatch(pos, "near_copy_of_seed", sid, round(j, 4)))
                continue
            kid, j = self._best(kept_lsh, kept_sigs, sig)
            if kid is not None and j >= self.threshold:
                matches.append(FuzzyMatch(pos, "near_duplicate", kid, round(j, 4)))
                continue
            key = item_id if item_id not in kept_sigs else f"{item_id}#{pos}"
            kept_lsh.insert(key, sig)
            kept_sigs[key] = sig
        return matches
