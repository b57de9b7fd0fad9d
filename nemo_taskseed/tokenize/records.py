"""Read curated JSONL into documents, rejecting bad lines with their file and line number.

A bad line never stops the run: it becomes a `Reject` (written to `rejects.jsonl` by the caller)
and the rest of the file still tokenizes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Document:
    """One pretraining document: its text and the group (prefix name) it is written to."""

    text: str
    group: tuple[str, ...]
    kind: str | None
    format: str | None  # multiple_choice | generative (the record's `format`), for blend.format_quotas
    source: str  # "file:line", for error messages further down


@dataclass(frozen=True)
class Reject:
    file: str
    line: int
    reason: str

    def to_json(self) -> dict:
        return {"file": self.file, "line": self.line, "reason": self.reason}


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def prefix_name(group: Sequence[str]) -> str:
    """File-system-safe prefix name for a group, e.g. ("arc_easy", "answer") -> "arc_easy__answer"."""
    parts = [_UNSAFE.sub("-", part).strip("-.") or "x" for part in group]
    return "__".join(parts)


def read_documents(
    path: Path,
    *,
    text_field: str = "text",
    group_by: Sequence[str] = ("family", "variant"),
    optional_group_keys: Sequence[str] = ("variant",),
    missing_group_value: str = "all",
    display_name: str | None = None,
    max_chars: int = 0,
) -> Iterator[Document | Reject]:
    """Yield a `Document` per usable line of `path` and a `Reject` per bad one (1-based lines).

    Lines are decoded one at a time so that one undecodable line does not poison the file.
    Keys in `optional_group_keys` fall back to `missing_group_value`; any other grouping key
    is required, because a document without a family cannot be placed in the blend.
    `display_name` is the file as rejects name it (default `path`): a Ray worker opens the absolute
    path, while rejects keep the path the user gave.
    """
    name = display_name if display_name is not None else str(path)
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue  # blank lines (e.g. a trailing newline) are not records
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Reject(name, line_no, f"undecodable line: not UTF-8 ({exc.reason} at byte {exc.start})")
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Reject(name, line_no, f"invalid JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(row, dict):
                yield Reject(name, line_no, f"not a JSON object but {type(row).__name__}")
                continue
            if text_field not in row:
                yield Reject(name, line_no, f"missing field {text_field!r}")
                continue
            text = row[text_field]
            if not isinstance(text, str):
                yield Reject(name, line_no, f"field {text_field!r} is {type(text).__name__}, not a string")
                continue
            if not text.strip():
                yield Reject(name, line_no, f"empty field {text_field!r}")
                continue
            if max_chars and len(text) > max_chars:
                # One runaway text would otherwise become one multi-million-token document.
                yield Reject(
                    name,
                    line_no,
                    f"field {text_field!r} has {len(text)} characters > tokenize.max_document_chars={max_chars}",
                )
                continue
            group, missing = [], None
            for key in group_by:
                value = row.get(key)
                if value is None or (isinstance(value, str) and not value.strip()):
                    if key in optional_group_keys:
                        value = missing_group_value
                    else:
                        missing = key
                        break
                group.append(str(value))
            if missing is not None:
                yield Reject(name, line_no, f"missing grouping field {missing!r}")
                continue
            kind, fmt = row.get("kind"), row.get("format")
            yield Document(
                text=text,
                group=tuple(group),
                kind=kind if isinstance(kind, str) else None,
                format=fmt if isinstance(fmt, str) else None,
                source=f"{name}:{line_no}",
            )
