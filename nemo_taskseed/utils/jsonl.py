"""File helpers every stage shares: atomic writes, and JSONL reads that name the file and line at fault."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemo_taskseed.errors import UserError


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` via a temp file, fsync and rename: a crash never leaves half a file."""
    write_lines(path, [text], newline=False)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp path beside `path` to write to; renamed onto `path` when the block succeeds, removed
    when it fails (a half-written file on a full disk would keep it full for the rerun). An
    OSError that names no file (write, fsync) is re-raised naming `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        tmp.replace(path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not exc.filename:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def write_lines(path: str | Path, lines: Iterable[str], *, newline: bool = True) -> int:
    """Write lines to `path` atomically (temp file + fsync + rename); returns how many."""
    return write_lines_digest(path, lines, newline=newline)["lines"]


def write_lines_digest(path: str | Path, lines: Iterable[str], *, newline: bool = True) -> dict[str, Any]:
    """`write_lines`, also returning the file's size and sha256 (computed while writing, so a
    step's published manifest costs no second read): {"lines", "bytes", "sha256"}."""
    import hashlib

    n = size = 0
    digest = hashlib.sha256()
    with atomic_path(path) as tmp:
        with tmp.open("wb") as f:
            for line in lines:
                data = (line + "\n" if newline else line).encode("utf-8")
                f.write(data)
                digest.update(data)
                size += len(data)
                n += 1
            f.flush()
            os.fsync(f.fileno())
    return {"lines": n, "bytes": size, "sha256": digest.hexdigest()}


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]], *, sort_keys: bool = False) -> int:
    return write_lines(path, (json.dumps(row, ensure_ascii=False, sort_keys=sort_keys) for row in rows))


def write_json(path: str | Path, data: Any, *, sort_keys: bool = False) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=sort_keys, default=str) + "\n")


@dataclass(frozen=True)
class LineRange:
    """Bytes [start, end) of a JSONL file, cut at line ends; its first line is line `first_line`."""

    start: int
    end: int
    first_line: int = 1


def line_ranges(path: str | Path, target_bytes: int) -> list[LineRange]:
    """`path` cut into ranges of about `target_bytes` (each ends at the first line end past the
    target), in one pass: a step can give one large file to many workers. A file no larger than
    `target_bytes` (or `target_bytes` <= 0) is one range."""
    size = Path(path).stat().st_size
    if target_bytes <= 0 or size <= target_bytes:
        return [LineRange(0, size, 1)]
    ranges, start, first, pos = [], 0, 1, 0
    with Path(path).open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            pos += len(raw)
            if pos - start >= target_bytes:
                ranges.append(LineRange(start, pos, first))
                start, first = pos, line_no + 1
    if pos > start:
        ranges.append(LineRange(start, pos, first))
    return ranges


def _lines(f: Any, span: LineRange | None) -> Iterator[tuple[int, bytes]]:
    if span is None:
        yield from enumerate(f, start=1)
        return
    f.seek(span.start)
    pos = span.start
    for line_no, raw in enumerate(f, start=span.first_line):
        if pos >= span.end:
            return
        pos += len(raw)
        yield line_no, raw


def iter_jsonl(
    path: str | Path, *, max_bytes: int = 0, span: LineRange | None = None
) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Each non-blank line as (line number, object, None), or (line number, None, why) when the
    line is not a JSON object or is longer than `max_bytes` (0: no limit): for readers that reject
    bad lines and go on. `span`: only the lines of that range (numbered as in the whole file)."""
    with Path(path).open("rb") as f:
        for line_no, raw in _lines(f, span):
            if not raw.strip():
                continue
            if max_bytes and len(raw) > max_bytes:
                yield line_no, None, f"line of {len(raw)} bytes > limit {max_bytes}"
                continue
            try:
                row = json.loads(raw)
            except (UnicodeDecodeError, ValueError) as exc:
                yield line_no, None, f"not valid JSON: {exc}"
                continue
            if not isinstance(row, dict):
                yield line_no, None, f"expected a JSON object, got {type(row).__name__}"
                continue
            yield line_no, row, None


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each line; the first bad line raises UserError naming file and line."""
    for line_no, row, error in iter_jsonl(path):
        if error is not None:
            raise UserError(f"{path}:{line_no}: {error}")
        yield line_no, row


def read_json_artifact(
    path: str | Path,
    *,
    what: str,
    default_name: str,
    hint: str,
    error: type[UserError] = UserError,
    schema: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """A JSON artifact one step wrote for another (a plan, a manifest): `path` or `path/default_name`.

    Returns (object, the file's path). Errors name the file: missing (with `hint`, the command that
    writes it), not JSON (with the line), not an object, or of another `schema` version.
    """
    path = Path(path)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise error(f"{what} not found: {path} ({hint})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object")
    if schema is not None and data.get("schema") != schema:
        raise error(f"{path}: schema {data.get('schema')!r}, expected {schema!r}")
    return data, path
