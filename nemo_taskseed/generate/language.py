"""Is a generated item in its seed's language? Google's CLD2 (`pycld2`) on both texts.

The catalog seeds from many multilingual subtasks (afrimgsm, MGSM, okapi, ...); a small or
English-centred generator answers a Swahili seed in English, which silently turns a multilingual
seed set into an English one. The prompts ask for the seed's language; this check rejects an item
that does not follow (`wrong_language`, with both languages). It decides only when CLD2 is sure
of both texts: short or mixed texts are let through rather than guessed at.

CLD2 (not fastText's LID model, which NeMo Curator's language filter uses) because it ships its
model inside the wheel: no model download, and no hub here.
"""

from __future__ import annotations

from typing import Any

# Below this many letters CLD2's verdicts are unreliable (a question of a few words).
MIN_CHARS = 40


def _text(record: dict[str, Any]) -> str:
    parts = [str(record.get("question") or "")]
    parts += [str(o) for o in record.get("options") or []]
    return " ".join(parts)


def detect(text: str) -> str | None:
    """The language code CLD2 is sure of, else None ("un"known, unreliable, too short)."""
    import pycld2

    if sum(ch.isalpha() for ch in text) < MIN_CHARS:
        return None
    try:
        reliable, _, details = pycld2.detect(text)
    except pycld2.error:  # invalid UTF-8 (lone surrogates) and the like
        return None
    code = details[0][1] if details else "un"
    return code if reliable and code != "un" else None


def language_mismatch(seed: dict[str, Any], item: dict[str, Any]) -> str | None:
    """ "<seed lang> -> <item lang>" when both are detected and differ, else None."""
    want, got = detect(_text(seed)), detect(_text(item))
    if want and got and want != got:
        return f"{want} -> {got}"
    return None
