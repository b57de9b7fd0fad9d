"""Exact dedup: a hash of the normalized item text (context, question, options by default).

Keys are compared within the generated records (the first occurrence is kept) and against the
seeds (a generated item that restates a seed verbatim adds nothing and is dropped).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nemo_taskseed.filter.text import normalize_text, record_fields_text


def exact_key(record: dict[str, Any], fields: Sequence[str]) -> str | None:
    """blake2b of the normalized text of `fields`; None when the record has no text there."""
    text = normalize_text(" ".join(record_fields_text(record, fields)))
    if not text:
        return None
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True)
class ExactMatch:
    position: int  # index of the dropped item in the input sequence
    reason: str  # exact_duplicate | exact_copy_of_seed
    match_id: str  # the kept generated record or the seed it repeats
    own_seed: bool  # the matched seed is the item's own seed


def find_exact_duplicates(
    items: Sequence[tuple[str, str, dict[str, Any]]],
    seeds: Iterable[dict[str, Any]],
    fields: Sequence[str],
) -> list[ExactMatch]:
    """`items` are (id, seed_id, record); returns one ExactMatch per item to drop."""
    seed_keys: dict[str, str] = {}
    for seed in seeds:
        key = exact_key(seed, fields)
        if key is not None:
            seed_keys.setdefault(key, str(seed.get("id", "")))
    first_seen: dict[str, str] = {}
    matches = []
    for pos, (item_id, seed_id, record) in enumerate(items):
        key = exact_key(record, fields)
        if key is None:
            continue
        if key in seed_keys:
            matches.append(ExactMatch(pos, "exact_copy_of_seed", seed_keys[key], seed_keys[key] == seed_id))
        elif key in first_seen:
            matches.append(ExactMatch(pos, "exact_duplicate", first_seen[key], False))
        else:
            first_seen[key] = item_id
    return matches
