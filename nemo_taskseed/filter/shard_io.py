"""The filter's shard input and output stages: the rows a check sees, and the files a shard leaves.

    screen pipeline:  ReadFilterShardStage -> (screen checks) -> ScreenedShardWriterStage
    verify pipeline:  ApplyDropsStage -> (verify checks) -> CuratedShardWriterStage

Between the two, the driver's resolve phase writes `<work>/drops/<shard>.jsonl` (dedup, children of
contaminated seeds), which ApplyDropsStage applies. Per-check counts are computed by the last
writer from the verdict columns (`stage_counts`), so they add up across shards.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import DocumentBatch

from nemo_taskseed.filter.checks import is_seeds, stage_order
from nemo_taskseed.filter.records import (
    COLUMNS,
    KEPT,
    as_objects,
    frame_from_lines,
    kept_rows,
    parsed_records,
    records_to_frame,
    reject,
    split_frame,
)
from nemo_taskseed.pipeline import shards
from nemo_taskseed.utils.jsonl import LineRange, atomic_path, iter_jsonl, write_lines_digest


@dataclass
class ReadFilterShardStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """A part file in, its rows out: generated records as verdict rows (a line that is not a JSON
    object becomes a row rejected at stage `read`, naming file and line), or seed records."""

    name: str = "read_filter_shard"
    resources: Resources = field(default_factory=lambda: Resources(cpus=1.0))
    max_record_bytes: int = 0

    def ray_stage_spec(self) -> dict[str, Any]:
        return shards.ray_task_spec(super().ray_stage_spec())

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], ["file"]

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS

    def process(self, task: DocumentBatch) -> DocumentBatch:
        row = task.to_pandas().iloc[0]
        path = str(row["file"])
        span = LineRange(int(row["start"]), int(row["end"]), int(row["first_line"])) if "start" in row else None
        if is_seeds(task):
            # Seeds are references: status `seed`, never `kept`, so no filter touches them.
            data = records_to_frame([obj for _, obj, error in iter_jsonl(path) if error is None], keep_parsed=True)
            data["status"] = "seed"
        else:
            data = frame_from_lines(path, self.max_record_bytes, span)
        return DocumentBatch(dataset_name=task.dataset_name, data=data, _metadata=dict(task._metadata))


@dataclass
class ScreenedShardWriterStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Phase 1's end: the shard's verdict rows as Parquet (`<work>/frames/<shard>.parquet`), then
    its marker; seed shards write only the marker (their contaminated seeds and family counts)."""

    work_dir: str = "."
    name: str = "write_screened_shard"
    resources: Resources = field(default_factory=lambda: Resources(cpus=1.0))

    def ray_stage_spec(self) -> dict[str, Any]:
        return shards.ray_task_spec(super().ray_stage_spec())

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], ["id", "record"]

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], ["shard"]

    def process(self, task: DocumentBatch) -> DocumentBatch:
        shard, meta = task.dataset_name, task._metadata
        shards.clear_marker(self.work_dir, shard)
        df = task.to_pandas()
        if is_seeds(task):
            families = Counter(str(fam or "unknown") for fam in df["family"])
            summary = {
                "kind": "seeds",
                "seeds": len(df),
                "seeds_per_family": dict(families),
                "contaminated_seeds": meta.get("contaminated_seeds", []),
            }
        else:
            with atomic_path(Path(self.work_dir) / "frames" / f"{shard}.parquet") as tmp:
                df[COLUMNS].to_parquet(tmp, index=False)
            summary = {"kind": "generated", "rows": len(df)}
            if meta.get("requests.judge"):
                summary["requests"] = {"judge": meta["requests.judge"]}
        shards.write_marker(self.work_dir, shard, meta["fingerprint"], summary)
        return DocumentBatch(dataset_name=shard, data=pd.DataFrame({"shard": [shard]}), _metadata={"shard": shard})


@dataclass
class ApplyDropsStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Phase 3's start: the shard's phase-1 rows, with the global decisions applied to every
    variant of each item (`<work>/drops/<shard>.jsonl`: dedup, and children of contaminated seeds)."""

    work_dir: str = "."
    name: str = "apply_drops"
    resources: Resources = field(default_factory=lambda: Resources(cpus=1.0))

    def ray_stage_spec(self) -> dict[str, Any]:
        return shards.ray_task_spec(super().ray_stage_spec())

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], ["shard"]

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS

    def process(self, task: DocumentBatch) -> DocumentBatch:
        shard = task.dataset_name
        df = as_objects(pd.read_parquet(Path(self.work_dir) / "frames" / f"{shard}.parquet"))
        drops_file = Path(self.work_dir) / "drops" / f"{shard}.jsonl"
        drops = {d["item_id"]: d for _, d, _ in iter_jsonl(drops_file)} if drops_file.is_file() else {}
        if drops:
            for idx, item_id in kept_rows(df, "item_id"):
                drop = drops.get(item_id)
                if drop is not None:
                    reject(df, idx, drop["stage"], drop["reason"], drop["detail"])
        return DocumentBatch(dataset_name=shard, data=df, _metadata=dict(task._metadata))


@dataclass
class CuratedShardWriterStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Writes `curated/part-<shard>.jsonl` and `rejected/part-<shard>.jsonl` atomically, then the
    shard's marker with its per-stage and per-family counts (the driver merges those)."""

    out_dir: str = "."
    name: str = "write_curated_shard"
    resources: Resources = field(default_factory=lambda: Resources(cpus=1.0))

    def ray_stage_spec(self) -> dict[str, Any]:
        return shards.ray_task_spec(super().ray_stage_spec())

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], ["shard"]

    def process(self, task: DocumentBatch) -> DocumentBatch:
        from nemo_taskseed.filter.report import contamination_rows, family_counts

        shard, df = task.dataset_name, task.to_pandas()
        shards.clear_marker(self.out_dir, shard)
        records = parsed_records(df)
        kept, rejected = split_frame(df, records)
        files = {}
        for kind, rows in (("curated", kept), ("rejected", rejected)):
            path = shards.part_path(self.out_dir, kind, shard)
            entry = write_lines_digest(path, (json.dumps(r, ensure_ascii=False) for r in rows))
            files[f"{kind}/{path.name}"] = {"bytes": entry["bytes"], "sha256": entry["sha256"]}
        shards.write_marker(
            self.out_dir,
            shard,
            task._metadata["fingerprint"],
            {
                "files": files,
                "kept": len(kept),
                "rejected": len(rejected),
                "stages": stage_counts(df),
                "families": family_counts(df, records),
                "contaminated_records": contamination_rows(df),
                "usage": {"verify": task._metadata.get("usage.verify", {})},
                "requests": {"verify": task._metadata.get("requests.verify", {})},
            },
        )
        return DocumentBatch(dataset_name=shard, data=pd.DataFrame({"shard": [shard]}), _metadata={"shard": shard})


def stage_counts(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """{stage: {in, kept, dropped: {reason: n}}} from the verdicts, in pipeline order (additive)."""
    counts: dict[str, dict[str, Any]] = {}
    remaining = len(df)
    for stage in stage_order():
        mine = df[(df["stage"] == stage) & (df["status"] != KEPT)]
        dropped = dict(Counter(mine["reason"]))
        counts[stage] = {"in": remaining, "kept": remaining - len(mine), "dropped": dropped}
        remaining -= len(mine)
    return counts
