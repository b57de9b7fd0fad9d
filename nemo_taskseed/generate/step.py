"""`taskseed generate` / the `generate` step of `taskseed run`: seeds in, generated records out, shard by shard.

    in_dir/seeds*.jsonl  ->  out_dir/generated/part-<shard>.jsonl   one record per item and variant (taskseed.generated/1)
                             out_dir/rejected/part-<shard>.jsonl    every dropped candidate, with stage and reason
                             out_dir/shards/<shard>.json            done marker: fingerprint, counts, nodes
                             out_dir/cache/<shard>.<stage>.sqlite   the shard's request cache
                             out_dir/rejected_seeds.jsonl           seed lines that are not valid seeds (file:line)
                             out_dir/summary.json                   merged counts: kept, dropped per reason, requests

Seeds are cut into shards by subtask and position (`generate.shard_size` seeds each, named
`<task>.<index>`), so appending seeds to a subtask adds shards and changes only its last one.
Each shard is one Curator task through read -> generate and enrich (one stage, one engine) -> write; the writer commits
the shard's files atomically and then its marker. A restart skips every shard whose marker
matches its fingerprint (its seeds' bytes and every setting that shapes its output) and redoes
the rest, where the shard's request cache keeps finished requests from being sent again.
"""

from __future__ import annotations

import hashlib
import json
import time
from array import array
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from nemo_taskseed.config import to_container
from nemo_taskseed.errors import UserError
from nemo_taskseed.generate.batches import shard_task
from nemo_taskseed.generate.prompts import prompts_dir
from nemo_taskseed.generate.settings import EnrichmentSettings, GenerationSettings
from nemo_taskseed.generate.stages import (
    GenerateAndEnrichStage,
    GeneratedShardWriterStage,
    ReadSeedShardStage,
    log_summary,
)
from nemo_taskseed.llm.backends import Backend
from nemo_taskseed.llm.cost import stage_cost
from nemo_taskseed.pipeline import driver, publish, shards
from nemo_taskseed.pipeline.lock import holds_output_lock
from nemo_taskseed.schema.generated import GENERATED_SCHEMA_VERSION
from nemo_taskseed.schema.records import validate_seed
from nemo_taskseed.schema.rejected import rejected as rejected_line
from nemo_taskseed.utils.jsonl import write_json, write_jsonl

REJECTED_SEEDS = "rejected_seeds.jsonl"
PART_KINDS = ("generated", "rejected")


@dataclass
class SeedShard:
    """Where one shard's seeds are (file index, byte offset), and a hash of their bytes."""

    name: str
    digest: Any = field(default_factory=hashlib.sha256)
    file_index: array = field(default_factory=lambda: array("i"))
    offsets: array = field(default_factory=lambda: array("q"))

    def add(self, file_i: int, offset: int, raw: bytes) -> None:
        self.file_index.append(file_i)
        self.offsets.append(offset)
        self.digest.update(raw.rstrip(b"\r\n") + b"\n")

    def __len__(self) -> int:
        return len(self.offsets)


def plan_shards(
    in_dir: Path, shard_size: int, max_seed_bytes: int = 0
) -> tuple[list[str], list[SeedShard], list[dict]]:
    """(seed files, shards in name order, rejected seed lines) from `in_dir/seeds*.jsonl`.

    One streaming pass; memory is ~12 bytes per seed plus the ids of one subtask at a time. A line
    that is not JSON, not a valid seed, or longer than `max_seed_bytes` (0: no limit) is rejected
    with its file and line, never fatal.
    """
    if shard_size < 1:
        raise UserError(f"generate.shard_size must be >= 1, got {shard_size}")
    files = [str(f) for f in sorted(Path(in_dir).glob("seeds*.jsonl"))]
    if not files:
        raise UserError(f"no seeds*.jsonl in {in_dir} (run `taskseed seeds` first)")
    planned: dict[str, SeedShard] = {}
    position: dict[str, int] = {}
    seen: dict[str, set[str]] = {}
    rejected: list[dict] = []
    for file_i, path in enumerate(files):
        offset = 0
        with open(path, "rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                start, offset = offset, offset + len(raw)
                if not raw.strip():
                    continue
                where = {"file": Path(path).name, "line": line_no}
                if max_seed_bytes and len(raw) > max_seed_bytes:
                    rejected.append(
                        rejected_line(
                            "seeds",
                            "seed_too_large",
                            f"{len(raw)} bytes > generate.max_seed_bytes={max_seed_bytes}",
                            **where,
                        )
                    )
                    continue
                try:
                    seed = json.loads(raw)
                except ValueError as exc:  # includes UnicodeDecodeError
                    rejected.append(rejected_line("seeds", "unparseable_seed", str(exc)[:300], **where))
                    continue
                errors = validate_seed(seed) if isinstance(seed, dict) else ["not a JSON object"]
                if errors:
                    rejected.append(
                        rejected_line(
                            "seeds",
                            "invalid_seed",
                            "; ".join(errors)[:300],
                            seed_id=seed.get("id") if isinstance(seed, dict) else None,
                            **where,
                        )
                    )
                    continue
                task = seed["task"]
                ids = seen.setdefault(task, set())
                if seed["id"] in ids:
                    continue  # the same seed twice generates once
                ids.add(seed["id"])
                index = position.get(task, 0)
                position[task] = index + 1
                name = shards.shard_name(task, index // shard_size)
                planned.setdefault(name, SeedShard(name)).add(file_i, start, raw)
    return files, [planned[n] for n in sorted(planned)], rejected


def settings_fingerprint(config: dict) -> str:
    """Everything besides the seeds that shapes a shard's output: generation and enrichment
    settings, the model, and the prompt files' bytes (a reworded template re-generates)."""
    gen = GenerationSettings.from_config(config)
    enrich = EnrichmentSettings.from_config(config)
    backend = config["generate"]["backend"]
    folder = prompts_dir(gen.prompts_dir)
    prompts = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.yaml"))}
    # How shards are grouped into calls does not change what they contain.
    shaping = {k: v for k, v in asdict(gen).items() if k != "shards_per_call"}
    return shards.fingerprint(
        GENERATED_SCHEMA_VERSION,
        shaping,
        asdict(enrich),
        {"kind": backend.get("kind"), "model": backend.get("model")},
        prompts,
    )


def build_stages(config: dict, out_dir: Path, backend: Backend | None) -> list:
    gen = GenerationSettings.from_config(config)
    enrich = EnrichmentSettings.from_config(config)
    gcfg = config["generate"]
    return [
        ReadSeedShardStage(),
        GenerateAndEnrichStage(
            generation=gen,
            enrichment=enrich,
            backend_config=dict(gcfg["backend"]),
            out_dir=str(out_dir),
            prompts_dir=gen.prompts_dir,
            backend=backend,
            worker_cpus=float(gcfg["worker_cpus"]),
            workers=int(gcfg["workers"]) if gcfg.get("workers") else None,
            shards_per_call=gen.shards_per_call,
        ),
        GeneratedShardWriterStage(out_dir=str(out_dir)),
    ]


@holds_output_lock("generate", "out_dir")
def run_step(cfg, in_dir: Path, out_dir: Path, *, backend: Backend | None = None) -> dict:
    """Generate and enrich for every seed in `in_dir`; returns the summary (also out_dir/summary.json).

    `backend` lets callers (tests, notebooks) reuse a running engine (and runs inline); otherwise
    the model stage builds one from `cfg.generate.backend` per worker (one in this process inline).
    """
    started = time.time()
    config = to_container(cfg) or {}
    gcfg = config["generate"]
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    publish.begin(out_dir)  # from here until the end, the folder claims no finished set
    files, planned, rejected_seeds = plan_shards(in_dir, int(gcfg["shard_size"]), int(gcfg["max_seed_bytes"]))
    if not planned:
        raise UserError(f"{in_dir}: no valid seeds ({len(rejected_seeds)} invalid; see {out_dir / REJECTED_SEEDS})")
    write_jsonl(out_dir / REJECTED_SEEDS, rejected_seeds, sort_keys=True)
    executor = gcfg["executor"] if backend is None else "inline"
    run = driver.run_shards(
        out_dir,
        driver_shards(out_dir, files, planned, settings_fingerprint(config)),
        lambda todo: build_stages(config, out_dir, backend),
        executor,
        label="generate shards",
        name="taskseed_generate",
        kinds=PART_KINDS,
    )
    summary = merge_summary(out_dir, [run.markers[name] for name in run.planned], run.ran, rejected_seeds, config)
    summary["shards"].update(
        {"run_now": len(run.ran), "finished_before": len(planned) - len(run.ran), "removed_stale": run.removed}
    )
    summary["backend"]["executor"] = executor
    summary["seconds"] = round(time.time() - started, 1)
    # `seconds`, `shards.run_now` and `backend.executor` describe this invocation; the rest is a
    # function of the seeds and the settings.
    write_json(out_dir / "summary.json", summary, sort_keys=True)
    log_summary(summary)
    return summary


def driver_shards(out_dir: Path, files: list[str], planned: list[SeedShard], settings_fp: str) -> list[driver.Shard]:
    """The planned seed shards as the shard driver runs them: a shard's fingerprint is the settings'
    and its seeds' bytes; its task (where its seeds are) is built only if it runs."""
    out = []
    for s in planned:
        fingerprint = shards.fingerprint(settings_fp, s.digest.hexdigest())
        out.append(
            driver.Shard(
                name=s.name,
                fingerprint=fingerprint,
                task=partial(_task, s, fingerprint, files),
                outputs=tuple(shards.part_path(out_dir, kind, s.name) for kind in PART_KINDS),
            )
        )
    return out


def _task(shard: SeedShard, fingerprint: str, files: list[str]):
    return shard_task(shard.name, fingerprint, files, list(shard.file_index), list(shard.offsets))


def merge_summary(
    out_dir: Path, markers: list[dict], run_now: set[str], rejected_seeds: list[dict], config: dict
) -> dict:
    """The step summary from the shards' markers, in shard order (the driver never reads the records).

    Counts and `cost` cover every shard; `requests` and `backend.usage` cover the shards this
    invocation ran, so a resumed run shows what it sent, not what earlier runs did.
    """
    totals: dict[str, Any] = {}
    nodes: dict[str, int] = {}
    files: dict[str, Any] = {}
    for marker in markers:
        name = marker["shard"]
        files.update(publish.shard_files(out_dir, marker, name, PART_KINDS))
        shards.add_counts(totals, {"counts": marker["counts"], "cost": marker["usage"], "needed": marker["requests"]})
        if name in run_now:
            shards.add_counts(totals, {"requests": marker["requests"], "usage": marker["usage"]})
        node = marker["nodes"]["generate"] or marker["worker"]["node_id"]
        nodes[node] = nodes.get(node, 0) + 1
    counts = totals.get("counts", {})
    dropped = dict(counts.get("dropped", {}))
    for r in rejected_seeds:
        dropped[r["reason"]] = dropped.get(r["reason"], 0) + 1
    usage: dict[str, int] = {}
    for part in totals.get("usage", {}).values():
        shards.add_counts(usage, part)
    requests = totals.get("requests", {})
    backend_cfg = config["generate"]["backend"]
    return {
        "seeds": counts.get("seeds", 0),
        "candidates": counts.get("seeds", 0) * int(config["generate"]["sampling"]["n"]),
        "items_kept": counts.get("items_kept", 0),
        "records_kept": counts.get("records_kept", 0),
        "records_per_variant": dict(sorted(counts.get("records_per_variant", {}).items())),
        "dropped": dict(sorted(dropped.items())),
        "answer_positions": dict(sorted(counts.get("answer_positions", {}).items())),
        "requests": {
            stage: {k: requests.get(stage, {}).get(k, 0) for k in ("total", "cached", "sent", "refused")}
            for stage in ("generate", "enrich")
        },
        "backend": {"kind": backend_cfg.get("kind", "vllm"), "usage": usage},
        # Over every shard (each as measured by the run that finished it): what these outputs took.
        "cost": {
            stage: stage_cost(u, totals.get("needed", {}).get(stage, {}).get("total"))
            for stage, u in sorted(totals.get("cost", {}).items())
        },
        "shards": {
            "total": len(markers),
            "by_node": dict(sorted(nodes.items())),
            "shard_size": int(config["generate"]["shard_size"]),
        },
        "outputs": {
            "generated": str(out_dir / "generated" / "part-*.jsonl"),
            "rejected": str(out_dir / "rejected" / "part-*.jsonl"),
        },
        # The published set (pipeline/publish.py): readers take exactly these parts.
        "files": dict(sorted(files.items())),
    }
