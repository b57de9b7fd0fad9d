"""Read curated JSONL into documents, rejecting bad lines with their file and line number.

A bad line never stops the run: it becomes a `Reject` (written to `rejects.jsonl` by the caller)
and the rest of the file still tokenizes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from nemo_taskseed.utils.jsonl import LineRange, iter_jsonl


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
    span: LineRange | None = None,
) -> Iterator[Document | Reject]:
    """Yield a `Document` per usable line of `path` and a `Reject` per bad one (1-based lines).

    Lines are parsed one at a time (`utils.jsonl.iter_jsonl`) so that one undecodable line does
    not poison the file. Keys in `optional_group_keys` fall back to `missing_group_value`; any
    other grouping key is required, because a document without a family cannot be placed in the
    blend. `display_name` is the file as rejects name it (default `path`): a Ray worker opens the
    absolute path, while rejects keep the path the user gave.
    """
    name = display_name if display_name is not None else str(path)
    fields = _Fields(text_field, tuple(group_by), tuple(optional_group_keys), missing_group_value, max_chars)
    for line_no, row, error in iter_jsonl(path, span=span):
        if error is not None:  # not UTF-8, not JSON, or not an object
            yield Reject(name, line_no, error)
            continue
        doc = fields.document(row, f"{name}:{line_no}")
        yield doc if isinstance(doc, Document) else Reject(name, line_no, doc)


@dataclass(frozen=True)
class _Fields:
    """Where a record keeps its text and its group, as `read_documents` was asked."""

    text_field: str
    group_by: tuple[str, ...]
    optional_group_keys: tuple[str, ...]
    missing_group_value: str
    max_chars: int

    def text(self, row: dict) -> str:
        """The record's text, or raises ValueError with why it has none usable."""
        field = self.text_field
        if field not in row:
            raise ValueError(f"missing field {field!r}")
        text = row[field]
        if not isinstance(text, str):
            raise ValueError(f"field {field!r} is {type(text).__name__}, not a string")
        if not text.strip():
            raise ValueError(f"empty field {field!r}")
        if self.max_chars and len(text) > self.max_chars:
            # One runaway text would otherwise become one multi-million-token document.
            raise ValueError(
                f"field {field!r} has {len(text)} characters > tokenize.max_document_chars={self.max_chars}"
            )
        return text

    def group(self, row: dict) -> tuple[str, ...]:
        """The record's group, or raises ValueError naming the first grouping field it lacks."""
        group = []
        for key in self.group_by:
            value = row.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                if key not in self.optional_group_keys:
                    raise ValueError(f"missing grouping field {key!r}")
                value = self.missing_group_value
            group.append(str(value))
        return tuple(group)

    def document(self, row: dict, source: str) -> Document | str:
        """The record as a `Document`, or the reason it is rejected."""
        try:
            text, group = self.text(row), self.group(row)
        except ValueError as exc:
            return str(exc)
        kind, fmt = row.get("kind"), row.get("format")
        return Document(
            text=text,
            group=group,
            kind=kind if isinstance(kind, str) else None,
            format=fmt if isinstance(fmt, str) else None,
            source=source,
        )
