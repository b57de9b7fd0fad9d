"""Records flowing through the filter stages, and their JSONL input/output.

One DataFrame row per record: the record itself as a JSON string (nested options/lineage survive
Ray's pandas <-> Arrow hand-offs unchanged), a few columns stages read often, and the verdict
columns. A stage never removes a row: it sets `status` to `rejected` with `stage`, `reason` and a
JSON `detail`, and later stages skip rejected rows. The driver splits kept from rejected at the
end, so every dropped record lands in `rejected.jsonl` with why, and counts per stage and reason
come from the same columns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from nemo_taskseed.errors import UserError
from nemo_taskseed.utils.jsonl import read_jsonl

KEPT = "kept"
REJECTED = "rejected"
# item_id groups the variants (label/answer/reasoning/context) of one generated item: dedup and
# verification decide per item, and every variant shares that decision.
COLUMNS = [
    "id",
    "item_id",
    "seed_id",
    "family",
    "format",
    "record",
    "status",
    "stage",
    "reason",
    "detail",
    "annotations",
]


def read_records(directory: Path, pattern: str) -> list[dict[str, Any]]:
    """All records of `directory/pattern` files, in file then line order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"input folder not found: {directory}")
    files = sorted(directory.glob(pattern))
    return [rec for f in files for _, rec in read_jsonl(f)]


# Transient column: each row's record already parsed (a dict), so the stages of one shard parse it
# once instead of once each; never written to disk (the writers keep COLUMNS).
PARSED = "parsed"


def frame_from_lines(path: str | Path, max_record_bytes: int = 0, span: Any = None) -> pd.DataFrame:
    """One JSONL part file (or the `span`, a `utils.jsonl.LineRange`, of one) as verdict rows; a
    line that is not a JSON object, or longer than `max_record_bytes` (0: no limit), becomes a row
    already rejected at stage `read` (reason and file:line in its detail): a bad line never stops
    the run."""
    from nemo_taskseed.utils.jsonl import iter_jsonl

    records, bad = [], []
    for line_no, obj, error in iter_jsonl(path, max_bytes=max_record_bytes, span=span):
        if error is None:
            records.append(obj)
        else:
            reason = (
                "unparseable_json"
                if error.startswith("not valid JSON")
                else "record_too_large"
                if error.startswith("line of")
                else "not_an_object"
            )
            bad.append(
                {
                    "id": "",
                    "item_id": "",
                    "seed_id": "",
                    "family": "unknown",
                    "format": "unknown",
                    "record": "null",
                    "status": REJECTED,
                    "stage": "read",
                    "reason": reason,
                    "detail": json.dumps({"file": str(path), "line": line_no, "error": error}),
                    "annotations": "{}",
                    PARSED: None,
                }
            )
    df = records_to_frame(records, keep_parsed=True)
    return as_objects(pd.concat([df, pd.DataFrame(bad, columns=[*COLUMNS, PARSED])], ignore_index=True)) if bad else df


def parsed_records(df: pd.DataFrame) -> list[Any]:
    """Each row's record as a dict (None for unreadable lines), from the transient column if present."""
    if PARSED in df.columns:
        return list(df[PARSED])
    return [json.loads(r) if r else None for r in df["record"]]


def records_to_frame(records: list[dict[str, Any]], *, keep_parsed: bool = False) -> pd.DataFrame:
    rows = [
        {
            "id": str(r.get("id", "")),
            "item_id": str(
                ((r.get("lineage") or {}).get("item_id") if isinstance(r.get("lineage"), dict) else None)
                or r.get("id", "")
            ),
            "seed_id": str(r.get("seed_id") or ""),
            "family": str(r.get("family") or "unknown"),
            "format": str(r.get("format") or "unknown"),
            "record": json.dumps(r, ensure_ascii=False),
            "status": KEPT,
            "stage": "",
            "reason": "",
            "detail": "",
            "annotations": "{}",
        }
        for r in records
    ]
    df = as_objects(pd.DataFrame(rows, columns=COLUMNS))
    if keep_parsed:
        df[PARSED] = pd.Series(records, index=df.index, dtype=object)
    return df


def as_objects(df: pd.DataFrame) -> pd.DataFrame:
    """Plain Python-object columns. pandas 3 stores strings as Arrow arrays, whose per-row reads
    (itertuples, to_numpy) cost ~10 us a value: more than the filter's own work per record."""
    return df.astype(object)


def kept_mask(df: pd.DataFrame) -> pd.Series:
    return df["status"] == KEPT


def kept_items(df: pd.DataFrame) -> tuple[list[Any], dict[Any, list[Any]]]:
    """(one representative row index per kept item, in order; representative -> all its kept rows)."""
    reps: list[Any] = []
    members: dict[Any, list[Any]] = {}
    first: dict[str, Any] = {}
    kept = (df["status"] == KEPT).to_numpy()
    for idx, item, is_kept in zip(df.index, df["item_id"].to_numpy(), kept):
        if not is_kept:
            continue
        if item not in first:
            first[item] = idx
            reps.append(idx)
            members[idx] = []
        members[first[item]].append(idx)
    return reps, members


def kept_rows(df: pd.DataFrame, *columns: str):
    """(index, *values) of every kept row, read column-wise (per-cell `df.at` reads cost ~0.3 ms)."""
    kept = (df["status"] == KEPT).to_numpy()
    values = [df[c].to_numpy() for c in columns]
    for pos in kept.nonzero()[0]:
        yield (df.index[pos], *(v[pos] for v in values))


def reject(df: pd.DataFrame, index: Any, stage: str, reason: str, detail: dict[str, Any] | None = None) -> None:
    df.at[index, "status"] = REJECTED
    df.at[index, "stage"] = stage
    df.at[index, "reason"] = reason
    df.at[index, "detail"] = json.dumps(detail or {}, ensure_ascii=False, default=str)


def annotate(df: pd.DataFrame, index: Any, key: str, value: Any) -> None:
    """Attach a stage's finding (e.g. the vote) to a row; it is written into the curated record."""
    ann = json.loads(df.at[index, "annotations"] or "{}")
    ann[key] = value
    df.at[index, "annotations"] = json.dumps(ann, ensure_ascii=False, default=str)


def split_frame(
    df: pd.DataFrame, records: list[Any] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(curated records with their annotations, rejected entries with stage/reason/detail).
    `records`: the rows' parsed records, when the caller has them already."""
    kept, rejected = [], []
    records = parsed_records(df) if records is None else records
    for row, record in zip(df.itertuples(index=False), records):
        annotations = json.loads(row.annotations) if row.annotations and row.annotations != "{}" else {}
        if row.status == KEPT:
            kept.append({**record, **annotations})
        else:
            rejected.append(
                {
                    "id": row.id,
                    "seed_id": row.seed_id or None,
                    "family": row.family,
                    "stage": row.stage,
                    "reason": row.reason,
                    "detail": json.loads(row.detail or "{}"),
                    "annotations": annotations,
                    "record": record,
                }
            )
    return kept, rejected
