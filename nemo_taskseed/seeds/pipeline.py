"""Seed collection + normalization as one Curator pipeline, with resume and a summary."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from nemo_taskseed.config import section_settings, to_container
from nemo_taskseed.pipeline.lock import holds_output_lock
from nemo_taskseed.schema import content_id
from nemo_taskseed.schema.rejected import rejected as rejected_line
from nemo_taskseed.seeds.source import SourceError, mirror_file
from nemo_taskseed.seeds.stages import (
    NormalizeSeedsStage,
    SeedJsonlWriterStage,
    SeedSplitReaderStage,
    ValidateSeedSchemaStage,
    task_fingerprint,
)
from nemo_taskseed.seeds.targets import plan_rows
from nemo_taskseed.utils.jsonl import write_lines

FIELD_RULE_KEYS = ("question_fields", "context_fields", "letter_option_sources")


def _settings(seeds_cfg: dict[str, Any], mirror: str | None) -> dict[str, Any]:
    keys = ("max_per_subtask", "sample_seed", *FIELD_RULE_KEYS)
    return {"mirror": str(Path(mirror).resolve()) if mirror else None, **{k: seeds_cfg.get(k) for k in keys}}


def _is_done(row: dict[str, Any], out_dir: Path, settings: dict[str, Any], mirror: str | None) -> bool:
    marker = out_dir / ".parts" / f"{row['task']}.done.json"
    if not marker.is_file() or not (out_dir / ".parts" / f"seeds.{row['task']}.jsonl").is_file():
        return False
    try:
        source = str(mirror_file(mirror, row["dataset_path"], row["dataset_name"], row["split"])) if mirror else None
    except SourceError:
        return False
    return json.loads(marker.read_text())["fingerprint"] == task_fingerprint(row, settings, source)


def build_seed_pipeline(seeds_cfg: dict[str, Any], out_dir: Path, mirror: str | None):
    from nemo_curator.pipeline import Pipeline

    return Pipeline(
        name="taskseed_seeds",
        description="lm-eval seed splits -> unified seed records",
        stages=[
            SeedSplitReaderStage(
                mirror=mirror,
                max_per_subtask=seeds_cfg["max_per_subtask"],
                sample_seed=int(seeds_cfg["sample_seed"]),
            ),
            NormalizeSeedsStage(field_rules={k: list(seeds_cfg[k]) for k in FIELD_RULE_KEYS}),
            ValidateSeedSchemaStage(),
            SeedJsonlWriterStage(out_dir=str(out_dir), settings=_settings(seeds_cfg, mirror)),
        ],
    )


@holds_output_lock("seeds", "out_dir")
def collect_seeds(
    catalog_rows: list[dict[str, Any]],
    seeds_cfg: Any,
    out_dir: str | Path,
    *,
    mirror: str | None = None,
    executor=None,
    executor_name: str = "ray_data",
) -> dict[str, Any]:
    """Run the seed pipeline over `catalog_rows`; write seeds.*.jsonl, rejected.jsonl, summary.json."""
    from nemo_curator.tasks import DocumentBatch

    from nemo_taskseed.pipeline.executors import make_executor

    start = time.perf_counter()
    seeds_cfg = to_container(seeds_cfg)
    # Defaults live in configs/base/seeds.yaml: a section without these keys is a config error
    # (max_per_subtask and sample_seed are read by build_seed_pipeline).
    keys = section_settings(
        None, seeds_cfg, "seeds", ("mirror", "max_per_subtask", "sample_seed", "resume", "dedup_content")
    )
    mirror = mirror or keys["mirror"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = _settings(seeds_cfg, mirror)
    # Volume targets (seeds.targets): a quota per subtask; subtasks given none are not read.
    catalog_rows, allocation = plan_rows(catalog_rows, seeds_cfg, mirror)
    resume = bool(keys["resume"])
    todo = [r for r in catalog_rows if not (resume and _is_done(r, out_dir, settings, mirror))]
    skipped = len(catalog_rows) - len(todo)
    if todo:
        tasks = [
            DocumentBatch(dataset_name=r["task"], data=pd.DataFrame({"catalog_row": [json.dumps(r)]})) for r in todo
        ]
        pipeline = build_seed_pipeline(seeds_cfg, out_dir, mirror)
        pipeline.run(executor or make_executor(executor_name), initial_tasks=tasks)
    task_names = [r["task"] for r in catalog_rows]
    duplicates = publish_seeds(out_dir, task_names, dedup_content=bool(keys["dedup_content"]))
    summary = summarize(out_dir, task_names, duplicates)
    # The filter checks each task's generated items with the catalog's answer check (catalog/verifiers.py).
    for r in catalog_rows:
        summary["per_task"][r["task"]]["verifier"] = r.get("verifier")
        # Other subtasks on the same source (catalog source_key) were asked for and seed as this one.
        aliases = [t for t in r.get("requested_as", []) if t != r["task"]]
        summary["per_task"][r["task"]]["aliases"] = aliases
    summary["aliases"] = {a: r["task"] for r in catalog_rows for a in r.get("requested_as", []) if a != r["task"]}
    if allocation["kinds"]:
        summary["allocation"] = {k: allocation[k] for k in ("kinds", "families", "notes")}
    summary.update({"resumed_subtasks": skipped, "seconds": round(time.perf_counter() - start, 2)})
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def seed_content_key(record: dict[str, Any]) -> str:
    """What makes two seeds the same seed, whichever subtask they came from (the record id also
    hashes the task name, so it differs between copies)."""
    return content_id(record.get("question"), record.get("context"), record.get("options"), record.get("answer_text"))


def publish_seeds(out_dir: Path, tasks: list[str], *, dedup_content: bool = True) -> dict[str, list[str]]:
    """Write `seeds.<task>.jsonl` from the subtasks' parts; with `dedup_content`, a seed whose content
    an earlier subtask (in `tasks` order) or an earlier row already has is dropped, and its
    rejection line (`duplicate_seed`, naming the kept copy) is returned per task.

    Redone from the parts on every run, so resuming, or asking for other subtasks, re-decides which
    copy is kept from complete inputs."""
    parts = out_dir / ".parts"
    seen: dict[str, str] = {}
    duplicates: dict[str, list[str]] = {}
    for task in tasks:
        part = parts / f"seeds.{task}.jsonl"
        if not part.is_file():
            continue
        kept, dropped = [], []
        for line in part.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            key = seed_content_key(record)
            where = f"{task} row {record.get('source', {}).get('row')}"
            if dedup_content and key in seen:
                dropped.append(
                    json.dumps(
                        rejected_line(
                            "seeds",
                            "duplicate_seed",
                            f"same question, context, options and answer as {seen[key]} (kept once)",
                            task=task,
                            row=record.get("source", {}).get("row"),
                            field=None,
                            file=record.get("source", {}).get("file"),
                        ),
                        ensure_ascii=False,
                    )
                )
                continue
            seen.setdefault(key, where)
            kept.append(line)
        write_lines(out_dir / f"seeds.{task}.jsonl", kept)
        duplicates[task] = dropped
    return duplicates


def summarize(out_dir: Path, tasks: list[str], duplicates: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Merge per-subtask rejections into rejected.jsonl and count kept/rejected per reason."""
    parts = out_dir / ".parts"
    duplicates = duplicates or {}
    per_task, reasons, rejected_lines = {}, {}, []
    for task in tasks:
        marker = parts / f"{task}.done.json"
        rejected_file = parts / f"rejected.{task}.jsonl"
        lines = rejected_file.read_text().splitlines() if rejected_file.is_file() else []
        lines += duplicates.get(task, [])
        rejected_lines.extend(lines)
        task_reasons: dict[str, int] = {}
        for line in lines:
            entry = json.loads(line)
            # `reason_code` is how subtasks finished before the one rejected-line shape wrote it.
            code = entry["reason_code"] if "reason_code" in entry else entry["reason"]
            task_reasons[code] = task_reasons.get(code, 0) + 1
            reasons[code] = reasons.get(code, 0) + 1
        info = json.loads(marker.read_text()) if marker.is_file() else {"kept": 0, "notes": {}}
        kept = info["kept"] - len(duplicates.get(task, []))
        per_task[task] = {
            "kept": kept,
            "rejected": task_reasons,
            "complete": marker.is_file(),
            "notes": info.get("notes", {}),
        }
    write_lines(out_dir / "rejected.jsonl", rejected_lines)
    return {
        "kept": sum(t["kept"] for t in per_task.values()),
        "rejected": sum(reasons.values()),
        "rejected_by_reason": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "subtasks": len(tasks),
        "incomplete_subtasks": [t for t, v in per_task.items() if not v["complete"]],
        "per_task": per_task,
    }
