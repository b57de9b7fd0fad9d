"""Word n-gram overlap with benchmark text (13-grams, as lm-eval's janitor and GPT-3's study).

The index maps each normalized n-gram of every benchmark row to the row it came from. A record is
contaminated when any of its n-grams is in the index. Benchmark strings shorter than n words (a
short CommonsenseQA question has 5 to 8) have no 13-gram at all and would never match; when such a
string has at least `short_min_words` words it is indexed whole, keyed by its first
`short_min_words` words, and matches a record containing it verbatim (after normalization).

Unlike the janitor, which cuts dirty spans out of long web documents, a synthetic Q&A item with a
benchmark n-gram is dropped whole: it is too short for the remainder to be worth keeping.

Word order (`unordered`): a copied test item with a few adjacent words swapped keeps every word
but breaks every n-gram that spans a swap, so a 12-25 word question with one to three swaps has no
13-gram left and no verbatim short string. With `unordered`, the index also holds each n-word
window and each short string as a bag of words (an order-free 64-bit hash of its words), and a
record's windows of those lengths are looked up the same way: a swap changes only the two windows
that hold one of the swapped words and not the other, so most windows of a long string and the
whole of a short one still match. Bags are looked up after the ordered checks, which stay the
evidence when they match.

Punctuation: records and rows are normalized by deleting it (lm-eval's janitor), so "(0, 0)" is
"00" and "anti-allergen" is "antiallergen". A copy that drops its punctuation may instead leave a
space ("0 0", "anti allergen"); every benchmark string whose words differ that way is indexed a
second time with punctuation as a space, so either form of the copy matches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nemo_taskseed.filter.text import normalize_words, split_punctuation_words, word_ngrams


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
    def __init__(self, ngram_size: int = 13, short_min_words: int = 5, unordered: bool = False):
        if ngram_size < 1:
            raise ValueError(f"ngram_size must be >= 1, got {ngram_size}")
        self.n = ngram_size
        # 0 disables whole-string matching of short benchmark strings.
        self.short_min = short_min_words if 0 < short_min_words < ngram_size else 0
        self.unordered = unordered
        self.rows: list[BenchmarkRow] = []
        self._grams: dict[str, int] = {}
        self._short: dict[str, list[tuple[tuple[str, ...], int]]] = {}
        # Bag-of-words keys (window length and the order-free hash of its words) -> row.
        self._bags: dict[int, int] = {}
        self._bag_lengths: set[int] = set()

    def __len__(self) -> int:
        return len(self._grams)

    @property
    def n_short(self) -> int:
        return sum(len(v) for v in self._short.values())

    def add(self, row: BenchmarkRow, texts: Iterable[str]) -> None:
        """Index one benchmark row given its strings (question, choices, answer ...), each under
        the normal words and, where it differs, with punctuation as a space (`split_punctuation_words`):
        a copy that loses its punctuation can write "(0, 0)" as "0 0" or "00", and records are
        normalized one way only."""
        ref = len(self.rows)
        self.rows.append(row)
        texts = list(texts)
        leaves = [normalize_words(t) for t in texts]
        self._add_leaves(ref, leaves, leaves)
        spaced = [split_punctuation_words(t) for t in texts]
        if spaced != leaves:
            # Short strings only where the variant differs (the same string twice in a row's list
            # would slow every lookup of its first words); repeated n-grams and bags are no-ops.
            self._add_leaves(ref, spaced, [w for w, normal in zip(spaced, leaves) if w != normal])

    def _add_leaves(self, ref: int, leaves: list[list[str]], whole: list[list[str]]) -> None:
        """The n-grams (and bags) of the leaves joined, and the short strings among `whole`."""
        joined = [w for leaf in leaves for w in leaf]
        grams = self._grams
        for g in word_ngrams(joined, self.n):
            grams.setdefault(g, ref)
        if self.short_min:
            for words in whole:
                if self.short_min <= len(words) < self.n:
                    head = " ".join(words[: self.short_min])
                    self._short.setdefault(head, []).append((tuple(words), ref))
        if self.unordered:
            bags = self._bags
            for key in _bag_keys(_prefix_sums(joined), self.n):
                bags.setdefault(key, ref)
            if len(joined) >= self.n:
                self._bag_lengths.add(self.n)
            for words in whole:
                if self.short_min and self.short_min <= len(words) < self.n:
                    (key,) = _bag_keys(_prefix_sums(words), len(words))
                    bags.setdefault(key, ref)
                    self._bag_lengths.add(len(words))

    def check_words(self, words: Sequence[str], *, unordered: bool = True) -> NgramHit | None:
        """The first hit for one string's words; `unordered=False` skips the bags (to measure them)."""
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
        if self._bags and unordered:
            return self._check_bags(words)
        return None

    def _check_bags(self, words: Sequence[str]) -> NgramHit | None:
        """The first window (longest length first, then position) whose bag of words is indexed."""
        bags = self._bags
        prefix = _prefix_sums(words)
        for length in sorted(self._bag_lengths, reverse=True):
            # `_bag_keys` written out: the check runs per record string, and a list of every
            # window's key per length cost a quarter more time (bench_decontam's word-order line).
            mix = length * _LENGTH_MIX
            for start in range(len(words) - length + 1):
                ref = bags.get((prefix[start + length] - prefix[start] + mix) & _MASK)
                if ref is not None:
                    return NgramHit(self.rows[ref], " ".join(words[start : start + length]), 1)
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


# --- bags of words ---------------------------------------------------------------------------------
_MASK = (1 << 64) - 1
_LENGTH_MIX = 0x9E3779B97F4A7C15  # spreads the window length over the key's bits
_WORD_HASHES: dict[str, int] = {}


def _word_hash(word: str) -> int:
    """A 64-bit hash of a word that is the same in every process (Python's `hash` of a str is not:
    the index is pickled and read by other workers)."""
    value = _WORD_HASHES.get(word)
    if value is None:
        value = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
        if len(_WORD_HASHES) < 2_000_000:  # a vocabulary's worth; beyond it, hashed each time
            _WORD_HASHES[word] = value
    return value


def _prefix_sums(words: Sequence[str]) -> list[int]:
    """prefix[i] = the sum of the first i words' hashes: a window's bag is a difference of two."""
    prefix = [0]
    total = 0
    for w in words:
        total += _word_hash(w)
        prefix.append(total)
    return prefix


def _bag_keys(prefix: list[int], length: int) -> list[int]:
    """The key of every `length`-word window, from the words' `_prefix_sums`: the sum of the
    window's word hashes (order-free), mixed with its length, modulo 2**64."""
    mix = length * _LENGTH_MIX
    return [(prefix[i + length] - prefix[i] + mix) & _MASK for i in range(len(prefix) - length)]
