"""The one text normalizer: what "the same text" means everywhere (copy checks in generation,
duplicate options, dedup and decontamination in the filter).

The rule follows lm-eval's decontamination janitor (lowercase, delete punctuation, split on
whitespace) so our matches agree with how lm-eval itself compares benchmark text, and adds NFKC
and Unicode punctuation so "don’t" and "don't" agree. Punctuation is deleted, not turned into a
space: "16-3-4" becomes "1634", "well-known" becomes "wellknown" (tests/test_text_normalizer.py).
`split_punctuation_words` is the one variant: the decontamination index also holds benchmark
strings with punctuation as a space, for copies that write "well known".
"""

from __future__ import annotations

import re
import string
import unicodedata

# \w keeps letters and digits of every script; everything else that is not whitespace is deleted.
_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)
# ASCII fast path (most text): str.translate deletes the same characters the regex does.
_ASCII_DELETE = str.maketrans("", "", string.punctuation)
_ASCII_SPACE = str.maketrans(string.punctuation, " " * len(string.punctuation))


def _words(text: str, ascii_table: dict[int, str | None], replacement: str) -> list[str]:
    """NFKC, casefold, punctuation replaced by `replacement`, split on whitespace."""
    if not text:
        return []
    text = str(text)
    if text.isascii():
        return text.lower().translate(ascii_table).split()
    text = unicodedata.normalize("NFKC", text).casefold()
    return _PUNCT.sub(replacement, text).split()


def normalize_words(text: str) -> list[str]:
    """NFKC, casefold, delete punctuation, split on whitespace."""
    return _words(text, _ASCII_DELETE, "")


def split_punctuation_words(text: str) -> list[str]:
    """`normalize_words` with punctuation turned into a space instead of deleted: "(0, 0)" gives
    "0 0", not "00"; "anti-allergen" gives "anti allergen". The decontamination index holds this
    variant of a benchmark string beside the normal one, because a copy that drops punctuation can
    write either."""
    return _words(text, _ASCII_SPACE, " ")


def normalize_text(text: str) -> str:
    """`normalize_words` joined by single spaces."""
    return " ".join(normalize_words(text))
