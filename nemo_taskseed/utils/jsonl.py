"""JSONL helpers shared by every stage: atomic writes, and reads that name the file and line at fault."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nemo_taskseed.errors import UserError


def write_lines(path: str | Path, lines: Iterable[str]) -> int:
    """Write lines to `path` atomically (temp file + fsync + rename): a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return n


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    return write_lines(path, (json.dumps(row, ensure_ascii=False) for row in rows))


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file; a bad line raises UserError naming the file and line."""
    path = Path(path)
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except (UnicodeDecodeError, ValueError) as exc:
                raise UserError(f"{path}:{line_no}: not valid JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise UserError(f"{path}:{line_no}: expected a JSON object")
            yield row
