"""The rows that travel between the generate stages, as Curator `DocumentBatch`es.

Rows between stages are `id`, `kind` and `record` (the record as a JSON string): records are
nested and differ per benchmark (`raw`, `source`), which neither Arrow nor pandas keeps intact
across Ray's hand-offs as columns; a JSON column round-trips exactly. A shard enters the pipeline
as `shard_task`: where its seeds are, not the seeds.
"""

from __future__ import annotations

import json

import pandas as pd
from nemo_curator.tasks import DocumentBatch

COLUMNS = ["id", "kind", "record"]


def to_batch(rows: list[tuple[str, str, dict]], dataset_name: str, metadata: dict | None = None) -> DocumentBatch:
    df = pd.DataFrame(
        [{"id": i, "kind": k, "record": json.dumps(r, ensure_ascii=False, sort_keys=True)} for i, k, r in rows],
        columns=COLUMNS,
    )
    return DocumentBatch(dataset_name=dataset_name, data=df, _metadata=dict(metadata or {}))


def from_batch(batch: DocumentBatch) -> list[tuple[str, dict]]:
    df = batch.to_pandas()
    return [(kind, json.loads(rec)) for kind, rec in zip(df["kind"], df["record"])]


def shard_task(
    shard: str, shard_fingerprint: str, files: list[str], file_index: list[int], offsets: list[int]
) -> DocumentBatch:
    """One shard as a Curator task: where its seeds are (file, byte offset), not the seeds
    themselves, so the driver's memory and Ray's object store hold a few bytes per seed."""
    df = pd.DataFrame({"file": [files[i] for i in file_index], "offset": offsets})
    return DocumentBatch(dataset_name=shard, data=df, _metadata={"shard": shard, "fingerprint": shard_fingerprint})
