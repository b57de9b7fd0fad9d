"""Word n-grams and record text shared by dedup and decontamination.

Both sides of every comparison (generated records, seeds, benchmark rows) go through the same
`normalize_words` (the project's one normalizer, `utils/text.py`), so a match never depends on
case, punctuation or spacing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from nemo_taskseed.utils.text import normalize_text, normalize_words, split_punctuation_words

__all__ = [
    "normalize_text",
    "normalize_words",
    "split_punctuation_words",
    "word_ngrams",
    "string_leaves",
    "record_fields_text",
]


def word_ngrams(words: Sequence[str], n: int) -> Iterator[str]:
    """Space-joined word n-grams (zip over shifted views: ~3x faster than a Python loop)."""
    if len(words) < n:
        return iter(())
    return map(" ".join, zip(*(words[i:] for i in range(n))))


def string_leaves(value: Any) -> Iterator[str]:
    """Every string inside a JSON value (dict values in key order, list items in order)."""
    if isinstance(value, str):
        if value.strip():
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from string_leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from string_leaves(v)


def record_fields_text(record: dict[str, Any], fields: Iterable[str]) -> list[str]:
    """The named fields of a record as strings (lists such as `options` and `tests` flattened)."""
    out: list[str] = []
    for name in fields:
        out.extend(string_leaves(record.get(name)))
    return out
