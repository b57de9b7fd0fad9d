"""NeMo Curator stages for seed collection and normalization.

Each input task is a `DocumentBatch` holding one subtask's catalog row (as JSON), with the shard
name and fingerprint the driver planned in its metadata (`seed_task`). Rows flow
as `task, row, status, reason_code, reason, field, payload` columns, `payload` holding a JSON
string: seed rows of different tasks have different shapes, and Arrow needs one schema per block.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import DocumentBatch

from nemo_taskseed.pipeline import shards
from nemo_taskseed.schema import validate_seed
from nemo_taskseed.schema.rejected import rejected as rejected_line
from nemo_taskseed.seeds.normalize import ROW_COLUMN, FieldRules, LmEvalTemplates, NormalizeError
from nemo_taskseed.seeds.source import SourceError, mirror_file, read_hub_split, read_mirror_split, sample_rows
from nemo_taskseed.utils.jsonl import write_lines

COLUMNS = ["task", "row", "status", "reason_code", "reason", "field", "payload"]
KEPT, REJECTED, DONE = "kept", "rejected", "done"


def _row(
    task: str, row: int | None, status: str, payload: Any = None, code: str = "", reason: str = "", field_: str = ""
) -> dict:
    return {
        "task": task,
        "row": -1 if row is None else int(row),
        "status": status,
        "reason_code": code,
        "reason": reason,
        "field": field_ or "",
        "payload": json.dumps(payload, ensure_ascii=False, default=str),
    }


def seed_task(catalog_row: dict[str, Any], shard: str, shard_fingerprint: str) -> DocumentBatch:
    """One subtask as a Curator task (one shard of the seeds step)."""
    return DocumentBatch(
        dataset_name=catalog_row["task"],
        data=pd.DataFrame({"catalog_row": [json.dumps(catalog_row)]}),
        _metadata={"shard": shard, "fingerprint": shard_fingerprint},
    )


def _batch(like: DocumentBatch, rows: list[dict]) -> DocumentBatch:
    return DocumentBatch(
        dataset_name=like.dataset_name,
        data=pd.DataFrame(rows, columns=COLUMNS),
        _metadata=like._metadata,
        _stage_perf=like._stage_perf,
    )


# Catalog-row keys that do not change a subtask's seeds: where they were read from (recorded
# separately) and which alias names asked for them.
_NOT_FINGERPRINTED = ("_source_file", "requested_as")


def task_fingerprint(catalog_row: dict[str, Any], settings: dict[str, Any], source_file: str | None) -> str:
    """Changes whenever the subtask's output could: its catalog row, our settings, or its source file."""
    catalog_row = {k: v for k, v in catalog_row.items() if k not in _NOT_FINGERPRINTED}
    stat = None
    if source_file and os.path.isfile(source_file):
        st = os.stat(source_file)
        stat = [st.st_size, st.st_mtime_ns]
    blob = json.dumps([catalog_row, settings, source_file, stat], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class SeedSplitReaderStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Read each subtask's seed split (mirror or hub), reject malformed rows, cap and sample."""

    mirror: str | None = None
    max_per_subtask: int | None = None
    sample_seed: int = 0
    name: str = "seed_split_reader"
    resources: Resources = field(default_factory=lambda: Resources(cpus=1.0))

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], ["catalog_row"]

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        out: list[dict] = []
        for catalog_json in batch.to_pandas()["catalog_row"]:
            cat = json.loads(catalog_json)
            task = cat["task"]
            try:
                if self.mirror:
                    path = mirror_file(self.mirror, cat["dataset_path"], cat["dataset_name"], cat["split"])
                    source = read_mirror_split(path)
                else:
                    source = read_hub_split(
                        cat["dataset_path"], cat["dataset_name"], cat["split"], cat.get("data_files")
                    )
            except SourceError as exc:
                out.append(_row(task, None, REJECTED, {"catalog_row": cat}, "source_unavailable", str(exc)))
                continue
            cat["_source_file"] = source.file
            for rej in source.rejected:
                out.append(
                    _row(task, rej["row"], REJECTED, rej, rej["reason_code"], rej["reason"], rej.get("field", ""))
                )
            # seeds.targets set a quota per subtask (seeds/targets.py); else the global cap.
            cap = cat.get("seed_quota", self.max_per_subtask)
            chosen = sample_rows(source.rows, cap, self.sample_seed, task)
            out.append(_row(task, None, "catalog", cat))
            out.extend(_row(task, idx, "raw", doc) for idx, doc in chosen)
        return _batch(batch, out)


@dataclass
class NormalizeSeedsStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Apply each subtask's lm-eval templates to its raw rows: unified seed records or rejections."""

    field_rules: dict[str, Any] = field(default_factory=dict)
    name: str = "normalize_seeds"
    resources: Resources = field(default_factory=lambda: Resources(cpus=1.0))

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        import logging

        # lm-eval warns once per task about the custom dataset we deliberately hand it. (Not in
        # setup(): overriding setup makes Curator run the stage as a Ray actor, which would break
        # the fusion of these four stages into one Ray Data task.)
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        df = batch.to_pandas()
        rules = FieldRules.from_config(self.field_rules)
        out: list[dict] = []
        for task, group in df.groupby("task", sort=False):
            catalog = [json.loads(p) for p in group.loc[group["status"] == "catalog", "payload"]]
            out.extend(r for r in group[group["status"] == REJECTED].to_dict("records"))
            if not catalog:
                continue
            cat = catalog[0]
            raw = group[group["status"] == "raw"]
            docs = [{**json.loads(p), ROW_COLUMN: int(r)} for p, r in zip(raw["payload"], raw["row"])]
            if not docs:
                out.append(_row(task, None, DONE, {"catalog_row": cat}))
                continue
            try:
                templates = LmEvalTemplates(cat, docs, rules)
                processed = templates.processed_docs()
            except Exception as exc:  # building lm-eval's task or its process_docs failed for the whole split
                reason = f"lm-eval task setup failed: {type(exc).__name__}: {exc}"
                out.extend(
                    _row(task, d[ROW_COLUMN], REJECTED, {"file": cat.get("_source_file")}, "task_setup_failed", reason)
                    for d in docs
                )
                out.append(_row(task, None, DONE, {"catalog_row": cat}))
                continue
            for position, doc in enumerate(processed):
                # process_docs usually keeps our row column; when it rebuilds rows, position is all we have.
                row = doc.get(ROW_COLUMN)
                if row is None and len(processed) == len(docs):
                    row = docs[position][ROW_COLUMN]
                    doc = {**doc, ROW_COLUMN: row}
                try:
                    record = templates.normalize(doc)
                    out.append(_row(task, row, KEPT, record))
                except NormalizeError as exc:
                    out.append(
                        _row(
                            task,
                            row,
                            REJECTED,
                            {"file": cat.get("_source_file")},
                            exc.code,
                            exc.reason,
                            exc.field or "",
                        )
                    )
            dropped = len(docs) - len(processed)
            if dropped > 0:
                out.append(
                    _row(
                        task,
                        None,
                        "note",
                        {"dropped_by_process_docs": dropped},
                        "dropped_by_process_docs",
                        f"{dropped} rows dropped by the task's process_docs",
                    )
                )
            out.append(_row(task, None, DONE, {"catalog_row": cat}))
        return _batch(batch, out)


@dataclass
class ValidateSeedSchemaStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Reject any kept record that fails the seed schema, naming the failing field."""

    name: str = "validate_seed_schema"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        df = batch.to_pandas().copy()
        for i in df.index[df["status"] == KEPT]:
            errors = validate_seed(json.loads(df.at[i, "payload"]))
            if errors:
                df.loc[i, ["status", "reason_code", "reason", "field"]] = [
                    REJECTED,
                    "schema_invalid",
                    "; ".join(errors),
                    errors[0].split(":")[0],
                ]
        return _batch(batch, df.to_dict("records"))


@dataclass
class SeedJsonlWriterStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Write the subtask's `kept/part-<shard>.jsonl` and `rejected/part-<shard>.jsonl` atomically,
    then its done marker `shards/<shard>.json` (pipeline/shards.py).

    One task is one subtask (`seed_task`): its metadata names the shard and the fingerprint the
    driver planned it with. Our own writer rather than Curator's JsonlWriter: output files are
    named per subtask and the marker, written last, is what makes a rerun skip the subtask. A
    subtask whose source could not be read gets its rejection but no marker: the next run retries
    it. The published `seeds.<task>.jsonl` are written from these parts after the pipeline, once
    seeds repeated across subtasks are dropped (`step.publish_seeds`).
    """

    out_dir: str = ""
    name: str = "seed_jsonl_writer"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], ["task", "kept", "rejected"]

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        df = batch.to_pandas()
        tasks = list(dict.fromkeys(df["task"]))
        if len(tasks) != 1:
            raise ValueError(f"seed writer: a task holds one subtask, got {tasks}")
        task = tasks[0]
        shard, fingerprint = batch._metadata["shard"], batch._metadata["fingerprint"]
        shards.clear_marker(self.out_dir, shard)  # from here on nothing claims this subtask is complete
        kept = df[df["status"] == KEPT].sort_values("row")
        rejected = df[df["status"] == REJECTED].sort_values("row")
        write_lines(shards.part_path(self.out_dir, "kept", shard), list(kept["payload"]))
        write_lines(shards.part_path(self.out_dir, "rejected", shard), _rejected_lines(task, rejected))
        reasons: dict[str, int] = {}
        for code in rejected["reason_code"]:
            reasons[code] = reasons.get(code, 0) + 1
        notes = {r.reason_code: json.loads(r.payload) for r in df[df["status"] == "note"].itertuples()}
        done = df[df["status"] == DONE]
        if len(done):  # the source was read: the subtask is complete
            catalog = json.loads(done["payload"].iloc[0])["catalog_row"]
            shards.write_marker(
                self.out_dir,
                shard,
                fingerprint,
                {
                    "task": task,
                    "kept": len(kept),
                    "rejected": reasons,
                    "notes": notes,
                    "source_file": catalog.get("_source_file"),
                },
            )
        return DocumentBatch(
            dataset_name=batch.dataset_name,
            data=pd.DataFrame(
                [{"task": task, "kept": len(kept), "rejected": int(sum(reasons.values()))}],
                columns=["task", "kept", "rejected"],
            ),
            _metadata=batch._metadata,
            _stage_perf=batch._stage_perf,
        )


def _rejected_lines(task: str, rejected: pd.DataFrame) -> list[str]:
    return [
        json.dumps(
            rejected_line(
                "seeds",
                r.reason_code,
                r.reason,
                task=task,
                row=None if r.row < 0 else int(r.row),
                field=r.field or None,
                file=json.loads(r.payload).get("file") if r.payload else None,
            ),
            ensure_ascii=False,
        )
        for r in rejected.itertuples()
    ]
