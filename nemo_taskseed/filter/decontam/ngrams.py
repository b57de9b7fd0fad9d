"""Word n-gram overlap with benchmark text (13-grams, as lm-eval's janitor and GPT-3's study).

The index maps each normalized n-gram of every benchmark row to the row it came from. A record is
contaminated when any of its n-grams is in the index. Benchmark strings shorter than n words (a
short CommonsenseQA question has 5 to 8) have no 13-gram at all and would never match; when such a
string has at least `short_min_words` words it is indexed whole, keyed by its first
`short_min_words` words, and matches a record containing it verbatim (after normalization).

Unlike the janitor, which cuts dirty spans out of long web documents, a synthetic Q&A item with a
benchmark n-gram is dropped whole: it is too short for the remainder to be worth keeping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nemo_taskseed.filter.text import normalize_words, word_ngrams


@dataclass(frozen=True)
class BenchmarkRow:
    benchmark: str
    split: str  # e.g. "cais/mmlu/anatomy:test"
    row: int
    # "raw" (the dataset row's strings) or "rendered:<task>" (lm-eval's prompt, choices, target).
    view: str = "raw"


@dataclass(frozen=True)
class NgramHit:
    row: BenchmarkRow
    ngram: str  # the first matching n-gram (normalized), or the whole short string
    n_matches: int  # how many distinct n-grams of the record are in the index


class NgramIndex:
    def __init__(self, ngram_size: int = 13, short_min_words: int = 5):
        if ngram_size < 1:
            raise ValueError(f"ngram_size must be >= 1, got {ngram_size}")
        self.n = ngram_size
        # 0 disables whole-string matching of short benchmark strings.
        self.short_min = short_min_words if 0 < short_min_words < ngram_size else 0
        self.rows: list[BenchmarkRow] = []
        self._grams: dict[str, int] = {}
        self._short: dict[str, list[tuple[tuple[str, ...], int]]] = {}

    def __len__(self) -> int:
        return len(self._grams)

    @property
    def n_short(self) -> int:
        return sum(len(v) for v in self._short.values())

    def add(self, row: BenchmarkRow, texts: Iterable[str]) -> None:
        """Index one benchmark row given its strings (question, choices, answer ...)."""
        ref = len(self.rows)
        self.rows.append(row)
        leaves = [normalize_words(t) for t in texts]
        joined = [w for leaf in leaves for w in leaf]
        grams = self._grams
        for g in word_ngrams(joined, self.n):
            grams.setdefault(g, ref)
        if self.short_min:
            for words in leaves:
                if self.short_min <= len(words) < self.n:
                    head = " ".join(words[: self.short_min])
                    self._short.setdefault(head, []).append((tuple(words), ref))

    def check_words(self, words: Sequence[str]) -> NgramHit | None:
        grams = self._grams
        hits = set(filter(grams.__contains__, word_ngrams(words, self.n)))
        if hits:
            # Deterministic evidence: the earliest indexed row, then the smallest n-gram (a set's
            # order follows string hashes, which differ between runs).
            first = min(hits, key=lambda g: (grams[g], g))
            return NgramHit(self.rows[grams[first]], first, len(hits))
        if self.short_min and self._short and len(words) >= self.short_min:
            for i, head in enumerate(word_ngrams(words, self.short_min)):
                for full, ref in self._short.get(head, ()):
                    if tuple(words[i : i + len(full)]) == full:
                        return NgramHit(self.rows[ref], " ".join(full), 1)
        return None

    def check(self, texts: Iterable[str], memo: dict[str, NgramHit | None] | None = None) -> NgramHit | None:
        """First hit over the record's strings, each checked on its own. `memo` keeps each string's
        result across calls (the variants of one item share most of their strings)."""
        best = None
        total = 0
        for text in texts:
            if memo is None:
                hit = self.check_words(normalize_words(text))
            elif text in memo:
                hit = memo[text]
            else:
                hit = memo[text] = self.check_words(normalize_words(text))
            if hit is not None:
                total += hit.n_matches
                best = best or hit
        if best is None:
            return None
        return NgramHit(best.row, best.ngram, total)
