"""Read a subtask's seed split: from a local mirror (JSONL/Parquet) or from the Hugging Face hub.

Rows are read one by one so that one malformed line is rejected with its file and line instead of
failing the whole split, which is what `datasets.load_dataset("json", ...)` would do.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class SourceRows:
    """Rows of one split: (row index, row) pairs, plus rejections, plus where they came from."""

    rows: list[tuple[int, dict[str, Any]]]
    rejected: list[dict[str, Any]] = field(default_factory=list)
    file: str | None = None


class SourceError(Exception):
    """The whole split cannot be read (missing file, unreachable hub)."""


def mirror_file(mirror: str | Path, dataset_path: str, dataset_name: str | None, split: str) -> Path:
    folder = Path(mirror) / dataset_path / (dataset_name or "default")
    for ext in ("jsonl", "parquet"):
        candidate = folder / f"{split}.{ext}"
        if candidate.is_file():
            return candidate
    raise SourceError(f"no {split}.jsonl or {split}.parquet under {folder}")


def _json_type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def conform_rows(rows: list[tuple[int, dict[str, Any]]], file: str | None) -> SourceRows:
    """Keep rows whose fields and JSON types agree with the split's majority; reject the rest.

    Arrow (and so `datasets`) needs one schema per split: a row missing a field or carrying a field
    of another type would otherwise fail the whole split, or silently become null.
    """
    if not rows:
        return SourceRows([], [], file)
    key_sets = Counter(frozenset(r) for _, r in rows)
    expected = key_sets.most_common(1)[0][0]
    types: dict[str, Counter] = {k: Counter() for k in expected}
    for _, r in rows:
        for k in expected:
            if k in r and r[k] is not None:
                types[k][_json_type(r[k])] += 1
    majority_type = {k: c.most_common(1)[0][0] for k, c in types.items() if c}
    kept, rejected = [], []
    for idx, r in rows:
        missing = sorted(expected - set(r))
        bad_type = sorted(
            k
            for k in expected & set(r)
            if r[k] is not None and k in majority_type and _json_type(r[k]) != majority_type[k]
        )
        if missing:
            rejected.append(
                {
                    "reason_code": "missing_field",
                    "reason": f"missing field(s): {', '.join(missing)}",
                    "row": idx,
                    "field": missing[0],
                }
            )
        elif bad_type:
            k = bad_type[0]
            rejected.append(
                {
                    "reason_code": "bad_field_type",
                    "reason": f"field {k!r} is {_json_type(r[k])}, expected {majority_type[k]}",
                    "row": idx,
                    "field": k,
                }
            )
        else:
            # In the row's own key order: iterating the frozenset would order the keys by string
            # hash, which PYTHONHASHSEED changes per process (seeds differed between two runs).
            kept.append((idx, {k: v for k, v in r.items() if k in expected}))
    for rej in rejected:
        rej["file"] = file
    return SourceRows(kept, rejected, file)


def read_mirror_split(path: Path) -> SourceRows:
    """Row index = 0-based data row (JSONL line number - 1)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return conform_rows(list(enumerate(pq.read_table(path).to_pylist())), str(path))
    rows, rejected = [], []
    with path.open("rb") as f:
        for idx, raw in enumerate(f):
            line_no = idx + 1
            try:
                text = raw.decode("utf-8")
                if not text.strip():
                    raise ValueError("empty line")
                row = json.loads(text)
                if not isinstance(row, dict):
                    raise ValueError(f"expected a JSON object, got {type(row).__name__}")
            except (UnicodeDecodeError, ValueError) as exc:
                rejected.append(
                    {
                        "reason_code": "malformed_row",
                        "reason": f"line {line_no}: {exc}",
                        "row": idx,
                        "line": line_no,
                        "file": str(path),
                    }
                )
                continue
            rows.append((idx, row))
    conformed = conform_rows(rows, str(path))
    for rej in conformed.rejected:
        rej["line"] = rej["row"] + 1
    conformed.rejected = rejected + conformed.rejected
    return conformed


def read_hub_split(dataset_path: str, dataset_name: str | None, split: str, data_files: Any = None) -> SourceRows:
    import datasets

    try:
        if data_files:
            ds = datasets.load_dataset(dataset_path, data_files=data_files, split=split)
        else:
            ds = datasets.load_dataset(dataset_path, dataset_name, split=split)
    except Exception as exc:  # hub errors come in many types; all mean "this split cannot be read"
        raise SourceError(
            f"cannot load {dataset_path}/{dataset_name or 'default'}:{split} from the hub: {exc}"
        ) from exc
    return conform_rows(list(enumerate(ds)), f"hf://{dataset_path}/{dataset_name or 'default'}/{split}")


def sample_rows(
    rows: list[tuple[int, dict[str, Any]]], cap: int | None, seed: int, task: str
) -> list[tuple[int, dict[str, Any]]]:
    """At most `cap` rows, chosen by a seeded hash of (task, row index).

    Hash ranks rather than random.sample: the choice of a row does not depend on how many rows the
    split has, so appending rows to a source does not reshuffle the seeds already chosen.
    """
    if cap is None or cap <= 0 or len(rows) <= cap:
        return rows

    def rank(item: tuple[int, dict]) -> str:
        return hashlib.sha256(f"{seed}:{task}:{item[0]}".encode()).hexdigest()

    return sorted(sorted(rows, key=rank)[:cap], key=lambda item: item[0])
