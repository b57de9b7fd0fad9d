"""Curated records <-> rows of fixed parquet `Features`, and the shard writer.

Every column has one Arrow type, so the hub's viewer, `datasets.load_dataset` and any parquet
reader see the same schema in every shard and every export. The mapping, record -> row:

- the record's top-level keys keep their names; `lineage` and `enrichment` are structs with the
  fields the generator writes (`FEATURES` below), `options` and `tests` lists of strings;
- `verification` and `semantic_match` (the filter's annotations) are JSON text: their shape
  depends on the check that wrote them (majority vote, code tests, an embedding match), so no
  one struct fits them; null when the record has none;
- `language`, `source` and `source_config` are added from the run (the seed's dataset and its
  catalog row) to filter on; they are not part of the record and `row_to_record` drops them;
- anything that does not fit its fixed type (a key the schema does not name, an integer
  `template_version` where the generator writes a string, a key the generator always writes but
  this record lacks, an optional key set to null) goes to `extra`, JSON text of
  `{"set": [[path, value], ...], "absent": [path, ...]}`; `extra` is null for every record the
  current generator and filter write.

`row_to_record(record_to_row(r, ...)) == r` for every JSON object `r`: the export loses nothing,
and tests/test_export.py checks it on every record of a real filter run read back through
`datasets.load_dataset`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_taskseed.schema.generated import GENERATED_SCHEMA

FORMATS = ("multiple_choice", "generative")  # schema/records.py; also the configs besides `default`
EXTRA = "extra"
JSON_COLUMNS = ("verification", "semantic_match")
DERIVED_COLUMNS = ("language", "source", "source_config")

_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Scalar:
    dtype: str  # "string", "int64", "float64", "bool"


@dataclass(frozen=True)
class ListOf:
    item: Any  # Scalar or Struct


@dataclass(frozen=True)
class Struct:
    fields: dict[str, Any]
    # Keys every record has (null is a value); the others are written only when the record has them.
    required: frozenset[str] = field(default_factory=frozenset)


STRING, INT, FLOAT, BOOL = Scalar("string"), Scalar("int64"), Scalar("float64"), Scalar("bool")

SAMPLING = Struct(
    {"n": INT, "temperature": FLOAT, "top_p": FLOAT, "max_tokens": INT, "seed": INT},
    frozenset({"n", "temperature", "top_p", "max_tokens", "seed"}),
)
# generate/questions.py writes these; seed_task, structured_outputs and example_seed_ids came later.
LINEAGE = Struct(
    {
        "seed_id": STRING,
        "seed_task": STRING,
        "item_id": STRING,
        "template_id": STRING,
        "template_version": STRING,
        "model": STRING,
        "backend": STRING,
        "sampling": SAMPLING,
        "request_key": STRING,
        "sample_index": INT,
        "raw_output": STRING,
        "structured_outputs": BOOL,
        "example_seed_ids": ListOf(STRING),
    },
    frozenset(GENERATED_SCHEMA["properties"]["lineage"]["required"]),
)
ENRICHMENT_LINEAGE = Struct(
    {
        "template_id": STRING,
        "template_version": STRING,
        "model": STRING,
        "backend": STRING,
        "sampling": SAMPLING,
        "request_key": STRING,
        "raw_output": STRING,
    },
    frozenset({"template_id", "template_version", "model", "backend", "sampling", "request_key", "raw_output"}),
)
ENRICHMENT = Struct(
    {
        "reasoning": STRING,
        "alternatives": ListOf(Struct({"option": STRING, "why_wrong": STRING}, frozenset({"option", "why_wrong"}))),
        "knowledge": STRING,
        "lineage": ENRICHMENT_LINEAGE,
    },
    frozenset({"reasoning", "alternatives", "knowledge"}),
)
# The record's own keys (schema/generated.py), in column order after the derived columns.
RECORD = Struct(
    {
        "id": STRING,
        "family": STRING,
        "task": STRING,
        "variant": STRING,
        "kind": STRING,
        "format": STRING,
        "license": STRING,
        "text": STRING,
        "question": STRING,
        "context": STRING,
        "options": ListOf(STRING),
        "answer_index": INT,
        "answer_text": STRING,
        "reference": STRING,
        "tests": ListOf(STRING),
        "seed_id": STRING,
        "schema_version": STRING,
        "lineage": LINEAGE,
        "enrichment": ENRICHMENT,
    },
    # Required exactly as the generated-record schema requires them (schema/generated.py).
    frozenset(GENERATED_SCHEMA["required"]),
)
COLUMN_ORDER = ["id", "family", "task", "variant", "kind", "format", *DERIVED_COLUMNS] + [
    k for k in RECORD.fields if k not in ("id", "family", "task", "variant", "kind", "format")
]
COLUMN_ORDER += [*JSON_COLUMNS, EXTRA]

# What each column holds, for the dataset card.
COLUMN_DOCS = {
    "id": "record id: `content_id(item_id, variant)`; the variants of one item share `lineage.item_id`",
    "family": "capability family of the seed (the benchmark it trains for, e.g. `arc`)",
    "task": "lm-eval subtask the seed came from",
    "variant": "document variant: `label`, `answer`, `reasoning` or `context`",
    "kind": "`knowledge` or `reasoning`",
    "format": "`multiple_choice` or `generative` (also the config the record is in)",
    "language": "language of the seed's subtask (catalog); added by the export",
    "source": "Hugging Face dataset the seed row came from; added by the export",
    "source_config": "that dataset's config (subset); added by the export",
    "license": "license of the seed's dataset, as recorded on the record at seeding",
    "text": "the pretraining document (what `taskseed tokenize` reads)",
    "question": "the generated question",
    "context": "passage the question is about, or null",
    "options": "answer options (multiple choice), else null",
    "answer_index": "index of the right option (multiple choice), else null",
    "answer_text": "the answer",
    "reference": "worked solution (math) or reference program (code), or null",
    "tests": "assert statements the reference passes (code), or null",
    "seed_id": "id of the seed record (a benchmark training row) the item was made from",
    "schema_version": "`taskseed.generated/1`",
    "lineage": "how the item was generated: seed, template, model, backend, sampling, raw model output",
    "enrichment": "reasoning, why each wrong option is wrong, knowledge, and their lineage; null for plain items",
    "verification": "JSON text: the filter's answer check (majority vote or code tests), null when not run",
    "semantic_match": "JSON text: the closest benchmark row an embedding check found below the drop level, or null",
    "extra": "JSON text of whatever did not fit the fixed types (see 'Columns'); null for records of this version",
}


# --- Features --------------------------------------------------------------------------------


def _feature(spec: Any) -> Any:
    from datasets import Sequence, Value

    if isinstance(spec, Scalar):
        return Value(spec.dtype)
    if isinstance(spec, ListOf):
        # A list of structs as `[{...}]`: `Sequence({...})` would store a struct of lists instead.
        return [_feature(spec.item)] if isinstance(spec.item, Struct) else Sequence(_feature(spec.item))
    return {name: _feature(sub) for name, sub in spec.fields.items()}


def features():
    """The fixed `datasets.Features` of every exported row."""
    from datasets import Features, Value

    columns: dict[str, Any] = {}
    for name in COLUMN_ORDER:
        if name in RECORD.fields:
            columns[name] = _feature(RECORD.fields[name])
        else:  # derived and JSON columns
            columns[name] = Value("string")
    return Features(columns)


# --- record -> row ---------------------------------------------------------------------------


class _Leftovers:
    """What a record holds that its fixed columns cannot: values set at a path, keys it lacks."""

    def __init__(self) -> None:
        self.set: list[list[Any]] = []
        self.absent: list[list[Any]] = []

    def __bool__(self) -> bool:
        return bool(self.set or self.absent)

    def as_json(self) -> str | None:
        if not self:
            return None
        out: dict[str, Any] = {}
        if self.set:
            out["set"] = self.set
        if self.absent:
            out["absent"] = self.absent
        return _json_text(out)


def _json_text(value: Any) -> str:
    """JSON text Arrow can store: readable non-ASCII, escaped only when the text has lone surrogates."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, ensure_ascii=True)
    return text


def _fits_scalar(value: Any, spec: Scalar) -> bool:
    if spec.dtype == "string":
        if not isinstance(value, str):
            return False
        try:
            value.encode("utf-8")  # lone surrogates (valid JSON escapes) are not valid Arrow strings
        except UnicodeEncodeError:
            return False
        return True
    if spec.dtype == "int64":
        return isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1]
    if spec.dtype == "float64":
        # Only floats: an int stored as a double would come back as 1.0, which JSON tells from 1.
        return isinstance(value, float)
    return isinstance(value, bool)


_MISFIT = object()


def _encode(value: Any, spec: Any, path: list[Any], left: _Leftovers) -> Any:
    """`value` as its column holds it, or _MISFIT (the caller puts it in `left`)."""
    if value is None:
        return None
    if isinstance(spec, Scalar):
        return value if _fits_scalar(value, spec) else _MISFIT
    if isinstance(spec, ListOf):
        if not isinstance(value, list):
            return _MISFIT
        out = []
        for item in value:
            inner = _Leftovers()
            encoded = _encode(item, spec.item, [], inner)
            # A list is stored whole or not at all: an item that needs leftovers sends the list there.
            if encoded is _MISFIT or inner or (item is None and isinstance(spec.item, Struct)):
                return _MISFIT
            out.append(encoded)
        return out
    return _encode_struct(value, spec, path, left)


def _encode_struct(value: Any, spec: Struct, path: list[Any], left: _Leftovers) -> Any:
    if not isinstance(value, dict):
        return _MISFIT
    out: dict[str, Any] = {}
    for key, sub in spec.fields.items():
        where = [*path, key]
        if key not in value:
            out[key] = None
            if key in spec.required:
                left.absent.append(where)
            continue
        item = value[key]
        if item is None and key not in spec.required:
            # An optional key set to null would read back as absent: keep the null explicitly.
            left.set.append([where, None])
            out[key] = None
            continue
        encoded = _encode(item, sub, where, left)
        if encoded is _MISFIT:
            left.set.append([where, item])
            encoded = None
        out[key] = encoded
    for key, item in value.items():
        if key not in spec.fields:
            left.set.append([[*path, key], item])
    return out


def record_to_row(record: dict[str, Any], derived: dict[str, str | None]) -> dict[str, Any]:
    """One curated record as a row of `features()`; `derived`: language, source, source_config."""
    left = _Leftovers()
    own = {k: v for k, v in record.items() if k not in JSON_COLUMNS}
    row = _encode_struct(own, RECORD, [], left)
    for name in JSON_COLUMNS:
        row[name] = _json_text(record[name]) if name in record else None
    for name in DERIVED_COLUMNS:
        row[name] = derived.get(name)
    row[EXTRA] = left.as_json()
    return {name: row[name] for name in COLUMN_ORDER}


# --- row -> record ---------------------------------------------------------------------------


def _decode(value: Any, spec: Any) -> Any:
    if value is None or isinstance(spec, Scalar):
        return value
    if isinstance(spec, ListOf):
        return [_decode(item, spec.item) for item in value]
    out = {}
    for key, sub in spec.fields.items():
        item = value.get(key)
        if item is None and key not in spec.required:
            continue  # absent in the record (an explicit null comes back from `extra`)
        out[key] = _decode(item, sub)
    return out


def _at(record: dict[str, Any], path: list[Any]) -> tuple[dict[str, Any], Any]:
    parent = record
    for key in path[:-1]:
        parent = parent[key]
    return parent, path[-1]


def row_to_record(row: dict[str, Any]) -> dict[str, Any]:
    """The curated record a row was made from, exactly (the inverse of `record_to_row`)."""
    record = _decode({k: row[k] for k in RECORD.fields}, RECORD)
    for name in JSON_COLUMNS:
        if row.get(name) is not None:
            record[name] = json.loads(row[name])
    extra = json.loads(row[EXTRA]) if row.get(EXTRA) else {}
    # Values first (a struct the record held as another type is replaced whole), then the keys
    # the record did not have at all.
    for path, value in sorted(extra.get("set", []), key=lambda pv: len(pv[0])):
        parent, key = _at(record, path)
        parent[key] = value
    for path in extra.get("absent", []):
        parent, key = _at(record, path)
        parent.pop(key, None)
    return record


# --- parquet shards --------------------------------------------------------------------------


@dataclass
class ShardFile:
    config: str
    path: Path  # relative to the export folder
    rows: int
    bytes: int = 0
    sha256: str = ""


class ShardWriter:
    """Rows of one config into `data/<config>/train-NNNNN-of-NNNNN.parquet`, `rows_per_shard` each.

    Shards are written under temporary names while the total is unknown and renamed at `close()`,
    so the hub's `-of-` naming holds without reading the records twice."""

    def __init__(self, root: Path, config: str, rows_per_shard: int, row_group_rows: int):
        if rows_per_shard < 1 or row_group_rows < 1:
            raise ValueError("export.rows_per_shard and export.row_group_rows must be >= 1")
        self.root, self.config = root, config
        self.rows_per_shard, self.row_group_rows = rows_per_shard, row_group_rows
        self._rows: list[dict[str, Any]] = []
        self._written: list[tuple[Path, int]] = []
        self._schema = features().arrow_schema

    @property
    def folder(self) -> Path:
        return self.root / "data" / self.config

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.rows_per_shard:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._rows:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f".train-{len(self._written):05d}.parquet.partial"
        table = pa.Table.from_pylist(self._rows, schema=self._schema)
        pq.write_table(table, path, row_group_size=self.row_group_rows)
        self._written.append((path, len(self._rows)))
        self._rows = []

    def close(self) -> list[ShardFile]:
        from nemo_taskseed.pipeline.publish import file_entry

        self._flush()
        total, out = len(self._written), []
        for index, (tmp, rows) in enumerate(self._written):
            final = self.folder / f"train-{index:05d}-of-{total:05d}.parquet"
            os.replace(tmp, final)
            entry = file_entry(final)
            out.append(ShardFile(self.config, final.relative_to(self.root), rows, entry["bytes"], entry["sha256"]))
        return out


def config_globs(configs: Iterable[str]) -> dict[str, list[str]]:
    """data_files of each config: a format's own shards; `default`, every format's, in FORMATS order."""
    formats = [c for c in FORMATS if c in set(configs)]
    out = {"default": [f"data/{c}/train-*.parquet" for c in formats]}
    out.update({c: [f"data/{c}/train-*.parquet"] for c in formats})
    return out
