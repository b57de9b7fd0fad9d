"""`taskseed seeds` / the `seeds` step of `taskseed run`: collect and normalize the seeds of
`seeds.tasks` from `seeds.mirror` (or the hub), one shard per subtask, through the shard driver.

    out_dir/kept/part-<subtask>.jsonl       the subtask's normalized seeds (before the content dedup)
    out_dir/rejected/part-<subtask>.jsonl   its rejected rows, with file, row and reason
    out_dir/shards/<subtask>.json           its done marker (pipeline/shards.py): fingerprint of the
                                            catalog row, the settings and the source file; counts
    out_dir/seeds.<task>.jsonl              published: the parts, seeds repeated across subtasks
                                            dropped (`publish_seeds`, redone from the parts every run)
    out_dir/rejected.jsonl, summary.json    every rejection, in subtask order; the counts

A subtask is one Curator task through read -> normalize -> validate -> write (`stages.py`); the
writer commits its parts and then its marker. A rerun skips every subtask whose marker matches
(`seeds.resume`), and redoes the published files from all parts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nemo_taskseed.catalog import load_catalog_rows
from nemo_taskseed.config import section_settings, to_container
from nemo_taskseed.errors import UserError
from nemo_taskseed.pipeline import driver, shards
from nemo_taskseed.pipeline.lock import holds_output_lock
from nemo_taskseed.schema import content_id
from nemo_taskseed.schema.rejected import rejected as rejected_line
from nemo_taskseed.seeds.source import SourceError, mirror_file
from nemo_taskseed.seeds.stages import (
    NormalizeSeedsStage,
    SeedJsonlWriterStage,
    SeedSplitReaderStage,
    ValidateSeedSchemaStage,
    seed_task,
    task_fingerprint,
)
from nemo_taskseed.seeds.targets import plan_rows
from nemo_taskseed.utils.jsonl import read_jsonl, write_lines

FIELD_RULE_KEYS = ("question_fields", "context_fields", "letter_option_sources")
PART_KINDS = ("kept", "rejected")


def run_step(cfg, in_dir: Path | None, out_dir: Path) -> dict[str, Any]:
    tasks = list(OmegaConf.to_container(cfg.seeds.tasks))
    if not tasks:
        raise UserError("seeds.tasks is empty: name the subtasks to seed from")
    rows = load_catalog_rows(cfg.catalog, tasks, dedup_sources=bool(cfg.seeds.dedup_sources))
    summary = collect_seeds(rows, cfg.seeds, out_dir, executor_name=cfg.run.executor)
    return {
        k: summary[k]
        for k in ("kept", "rejected", "rejected_by_reason", "subtasks", "incomplete_subtasks", "resumed_subtasks")
    }


def _settings(seeds_cfg: dict[str, Any], mirror: str | None) -> dict[str, Any]:
    keys = ("max_per_subtask", "sample_seed", *FIELD_RULE_KEYS)
    return {"mirror": str(Path(mirror).resolve()) if mirror else None, **{k: seeds_cfg.get(k) for k in keys}}


def build_seed_stages(seeds_cfg: dict[str, Any], out_dir: Path, mirror: str | None) -> list:
    """lm-eval seed splits -> unified seed records: the stages one subtask goes through."""
    return [
        SeedSplitReaderStage(
            mirror=mirror,
            max_per_subtask=seeds_cfg["max_per_subtask"],
            sample_seed=int(seeds_cfg["sample_seed"]),
        ),
        NormalizeSeedsStage(field_rules={k: list(seeds_cfg[k]) for k in FIELD_RULE_KEYS}),
        ValidateSeedSchemaStage(),
        SeedJsonlWriterStage(out_dir=str(out_dir)),
    ]


def plan_subtasks(
    catalog_rows: list[dict[str, Any]], out_dir: Path, settings: dict[str, Any], mirror: str | None
) -> list[driver.Shard]:
    """One shard per subtask, named after it; its fingerprint covers its catalog row, the settings
    and its mirror file (size and mtime), so a changed source redoes it."""
    planned = []
    for row in catalog_rows:
        try:
            source = (
                str(mirror_file(mirror, row["dataset_path"], row["dataset_name"], row["split"])) if mirror else None
            )
        except SourceError:
            source = None  # the run rejects the subtask as source_unavailable and writes no marker
        name = shards.safe_name(row["task"])
        fingerprint = task_fingerprint(row, settings, source)
        planned.append(
            driver.Shard(
                name=name,
                fingerprint=fingerprint,
                task=seed_task(row, name, fingerprint),
                outputs=tuple(shards.part_path(out_dir, kind, name) for kind in PART_KINDS),
            )
        )
    return planned


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
    """Run the seed pipeline over `catalog_rows`; write seeds.*.jsonl, rejected.jsonl, summary.json.

    `executor`: a Curator executor to run on instead of `executor_name`'s."""
    start = time.perf_counter()
    seeds_cfg = to_container(seeds_cfg)
    # Defaults live in configs/base/seeds.yaml: a section without these keys is a config error
    # (max_per_subtask and sample_seed are read by build_seed_stages).
    keys = section_settings(
        None, seeds_cfg, "seeds", ("mirror", "max_per_subtask", "sample_seed", "resume", "dedup_content")
    )
    mirror = mirror or keys["mirror"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Volume targets (seeds.targets): a quota per subtask; subtasks given none are not read.
    catalog_rows, allocation = plan_rows(catalog_rows, seeds_cfg, mirror)
    planned = plan_subtasks(catalog_rows, out_dir, _settings(seeds_cfg, mirror), mirror)
    run = driver.run_shards(
        out_dir,
        planned,
        lambda todo: build_seed_stages(seeds_cfg, out_dir, mirror),
        executor or executor_name,
        label=None,
        name="taskseed_seeds",
        kinds=PART_KINDS,
        require_markers=False,  # a subtask whose source could not be read is reported incomplete
        resume=bool(keys["resume"]),
    )
    subtasks = [(r["task"], s.name) for r, s in zip(catalog_rows, planned)]
    duplicates = publish_seeds(out_dir, subtasks, dedup_content=bool(keys["dedup_content"]))
    summary = summarize(out_dir, subtasks, run.markers, duplicates)
    # The filter checks each task's generated items with the catalog's answer check (catalog/verifiers.py).
    for r in catalog_rows:
        summary["per_task"][r["task"]]["verifier"] = r.get("verifier")
        # Other subtasks on the same source (catalog source_key) were asked for and seed as this one.
        aliases = [t for t in r.get("requested_as", []) if t != r["task"]]
        summary["per_task"][r["task"]]["aliases"] = aliases
    summary["aliases"] = {a: r["task"] for r in catalog_rows for a in r.get("requested_as", []) if a != r["task"]}
    if allocation["kinds"]:
        summary["allocation"] = {k: allocation[k] for k in ("kinds", "families", "notes")}
    skipped = len(planned) - len(run.ran)
    summary.update({"resumed_subtasks": skipped, "seconds": round(time.perf_counter() - start, 2)})
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def seed_content_key(record: dict[str, Any]) -> str:
    """What makes two seeds the same seed, whichever subtask they came from (the record id also
    hashes the task name, so it differs between copies)."""
    return content_id(record.get("question"), record.get("context"), record.get("options"), record.get("answer_text"))


def _line(record: dict[str, Any]) -> str:
    """A record as its part file holds it (as the writer stage wrote it)."""
    return json.dumps(record, ensure_ascii=False)


def _duplicate(task: str, record: dict[str, Any], kept_as: str) -> dict[str, Any]:
    source = record.get("source", {})
    return rejected_line(
        "seeds",
        "duplicate_seed",
        f"same question, context, options and answer as {kept_as} (kept once)",
        task=task,
        row=source.get("row"),
        field=None,
        file=source.get("file"),
    )


def publish_seeds(
    out_dir: Path, subtasks: list[tuple[str, str]], *, dedup_content: bool = True
) -> dict[str, list[dict[str, Any]]]:
    """Write `seeds.<task>.jsonl` from the subtasks' parts (`subtasks`: (task, shard) in order);
    with `dedup_content`, a seed whose content an earlier subtask or an earlier row already has is
    dropped, and its rejection (`duplicate_seed`, naming the kept copy) is returned per task.

    Redone from the parts on every run, so resuming, or asking for other subtasks, re-decides which
    copy is kept from complete inputs."""
    seen: dict[str, str] = {}
    duplicates: dict[str, list[dict[str, Any]]] = {}
    for task, shard in subtasks:
        part = shards.part_path(out_dir, "kept", shard)
        if not part.is_file():
            continue
        kept, dropped = [], []
        for _, record in read_jsonl(part):
            key = seed_content_key(record)
            if dedup_content and key in seen:
                dropped.append(_duplicate(task, record, seen[key]))
                continue
            seen.setdefault(key, f"{task} row {record.get('source', {}).get('row')}")
            kept.append(_line(record))
        write_lines(out_dir / f"seeds.{task}.jsonl", kept)
        duplicates[task] = dropped
    return duplicates


def summarize(
    out_dir: Path,
    subtasks: list[tuple[str, str]],
    markers: dict[str, dict[str, Any]],
    duplicates: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Merge per-subtask rejections into rejected.jsonl and count kept/rejected per reason
    (`markers`: the finished subtasks' done markers by shard)."""
    duplicates = duplicates or {}
    per_task, reasons, rejected_lines = {}, {}, []
    for task, shard in subtasks:
        rejected_file = shards.part_path(out_dir, "rejected", shard)
        entries = [entry for _, entry in read_jsonl(rejected_file)] if rejected_file.is_file() else []
        entries += duplicates.get(task, [])
        rejected_lines.extend(_line(entry) for entry in entries)
        task_reasons: dict[str, int] = {}
        for entry in entries:
            code = entry["reason"]
            task_reasons[code] = task_reasons.get(code, 0) + 1
            reasons[code] = reasons.get(code, 0) + 1
        marker = markers.get(shard)
        info = marker or {"kept": 0, "notes": {}}
        per_task[task] = {
            "kept": info["kept"] - len(duplicates.get(task, [])),
            "rejected": task_reasons,
            "complete": marker is not None,
            "notes": info.get("notes", {}),
        }
    write_lines(out_dir / "rejected.jsonl", rejected_lines)
    return {
        "kept": sum(t["kept"] for t in per_task.values()),
        "rejected": sum(reasons.values()),
        "rejected_by_reason": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "subtasks": len(subtasks),
        "incomplete_subtasks": [t for t, v in per_task.items() if not v["complete"]],
        "per_task": per_task,
    }
