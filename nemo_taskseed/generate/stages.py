"""Stages 3 and 4 as NeMo Curator ProcessingStages over one shard of seeds at a time.

    shard task (seed file offsets)
      -> ReadSeedShardStage          the shard's seeds
      -> GenerateAndEnrichStage      SimilarQuestions (stage 3): candidate items + rejections;
                                     AnswerEnrichment (stage 4): one record per variant
                                     (kind=generated) + rejections; both on one engine, one
                                     request stream, enrichment starting per seed
      -> GeneratedShardWriterStage   generated/part-<shard>.jsonl, rejected/part-<shard>.jsonl,
                                     then the done marker shards/<shard>.json

Rows between stages are `id`, `kind` and `record` (batches.py says why). The passes' logic is
plain code beside this module: questions.py (SimilarQuestions, stage 3) and enrichment.py
(AnswerEnrichment, stage 4); their settings are settings.py.

The model stage builds its backend in `setup()` (one per worker, declaring GPUs for in-process
vLLM) unless one is injected. Each pass's request cache is the shard's own SQLite file
(`cache/<shard>.<pass>.sqlite`, beside the shard's outputs), opened for that shard only: no two processes ever write one cache file, which
keeps it safe on NFS/Lustre, and a restart inside an unfinished shard re-sends nothing finished.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from loguru import logger
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import DocumentBatch

from nemo_taskseed.errors import UserError
from nemo_taskseed.generate.batches import COLUMNS, from_batch, to_batch
from nemo_taskseed.generate.enrichment import AnswerEnrichment
from nemo_taskseed.generate.prompts import load_templates
from nemo_taskseed.generate.questions import Candidate, SimilarQuestions
from nemo_taskseed.generate.settings import EnrichmentSettings, GenerationSettings
from nemo_taskseed.llm.backends import Backend, build_backend, engine_gpus
from nemo_taskseed.llm.cache import RequestCache
from nemo_taskseed.llm.requests import GroupResult, run_requests
from nemo_taskseed.pipeline import shards


def _light() -> Resources:
    # Reading and writing a shard is I/O: a fraction of a core lets Ray co-locate them with the
    # model stage instead of holding a whole CPU per node for them.
    return Resources(cpus=0.25)


# ---------------------------------------------------------------------------------------------
# Reader and writer
# ---------------------------------------------------------------------------------------------


@dataclass
class ReadSeedShardStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """(file, byte offset) rows in, the shard's seed records (kind=seed) out.

    The driver already validated every line while planning shards; a line that changed since
    is a user error naming the file and offset (the shard's fingerprint would differ anyway).
    """

    name: str = "read_seed_shard"
    resources: Resources = field(default_factory=_light)

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], ["file", "offset"]

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS

    def process(self, task: DocumentBatch) -> DocumentBatch:
        df = task.to_pandas()
        rows: list[tuple[str, str, dict]] = []
        handles: dict[str, Any] = {}
        try:
            for path, offset in zip(df["file"], df["offset"]):
                handle = handles.get(path) or handles.setdefault(path, open(path, "rb"))  # noqa: SIM115
                handle.seek(int(offset))
                line = handle.readline()
                try:
                    seed = json.loads(line)
                except ValueError as exc:
                    raise UserError(f"{path} (byte {offset}): seed line changed during the run: {exc}") from exc
                rows.append((seed["id"], "seed", seed))
        finally:
            for handle in handles.values():
                handle.close()
        return to_batch(rows, task.dataset_name, task._metadata)


@dataclass
class GeneratedShardWriterStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Writes one shard's outputs atomically, then its done marker; passes on only the marker.

    Curator's JsonlWriter writes straight to the final path with no completion marker, and
    pandas' JSON writer neither sorts keys nor keeps `ensure_ascii=False`; the shard's bytes must
    be identical whatever executor wrote them, and a half-written shard must never look done.
    """

    out_dir: str = "."
    name: str = "write_generated_shard"
    resources: Resources = field(default_factory=_light)

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], ["shard", "marker"]

    def process(self, task: DocumentBatch) -> DocumentBatch:
        from nemo_taskseed.utils.jsonl import write_lines_digest

        shard, meta = task._metadata["shard"], task._metadata
        df = task.to_pandas()
        generated = [r for k, r in zip(df["kind"], df["record"]) if k == "generated"]
        rejected = [r for k, r in zip(df["kind"], df["record"]) if k == "rejected"]
        shards.clear_marker(self.out_dir, shard)
        files = {}
        for kind, lines in (("generated", generated), ("rejected", rejected)):
            path = shards.part_path(self.out_dir, kind, shard)
            entry = write_lines_digest(path, lines)
            files[f"{kind}/{path.name}"] = {"bytes": entry["bytes"], "sha256": entry["sha256"]}
        records = [json.loads(r) for r in generated]
        marker = shards.write_marker(
            self.out_dir,
            shard,
            meta["fingerprint"],
            {
                "files": files,
                "counts": shard_counts(meta.get("seeds", 0), records, [json.loads(r) for r in rejected]),
                "requests": {"generate": meta.get("requests.generate", {}), "enrich": meta.get("requests.enrich", {})},
                "usage": {"generate": meta.get("usage.generate", {}), "enrich": meta.get("usage.enrich", {})},
                "nodes": {
                    "generate": meta.get("node.generate"),
                    "enrich": meta.get("node.enrich"),
                    "write": shards.worker_identity()["node_id"],
                },
            },
        )
        out = pd.DataFrame({"shard": [shard], "marker": [json.dumps(marker, sort_keys=True)]})
        return DocumentBatch(dataset_name=shard, data=out, _metadata={"shard": shard})


def shard_counts(seeds: int, generated: list[dict], rejected: list[dict]) -> dict[str, Any]:
    """What one shard contributes to the step summary (all additive across shards)."""
    items = {r["lineage"]["item_id"] for r in generated}
    positions: Counter = Counter()
    counted: set[str] = set()
    for r in generated:  # correct-option letters, once per multiple-choice item
        if r["format"] == "multiple_choice" and r["lineage"]["item_id"] not in counted:
            counted.add(r["lineage"]["item_id"])
            positions["ABCDEFGHIJKLMNOPQRSTUVWXYZ"[r["answer_index"]]] += 1
    return {
        "seeds": seeds,
        "items_kept": len(items),
        "records_kept": len(generated),
        "records_per_variant": dict(Counter(r["variant"] for r in generated)),
        "dropped": dict(Counter(r["reason"] for r in rejected)),
        "answer_positions": dict(positions),
    }


# ---------------------------------------------------------------------------------------------
# The model stage
# ---------------------------------------------------------------------------------------------

PASSES = ("generate", "enrich")  # each has its own cache file and its key in a shard's marker


@dataclass
class GenerateAndEnrichStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Seed shards in; per shard, records (kind=generated) and rejections (kind=rejected) out.

    Both passes run on one backend (one engine per worker, e.g. per GPU) through one request
    stream per call: the moment a seed's generation reply is parsed, its items' enrichment
    requests join the stream, so the engine stays full through the end of the generation pass
    instead of draining to its slowest request and then refilling. Several shards go through
    one call (`shards_per_call`), so subtasks with a handful of seeds still fill the engine.
    The set of requests, and so what is written, is the same as running the passes one after
    the other: replies are judged per seed, and duplicates across seeds in seed order at the end.
    """

    generation: GenerationSettings | None = None
    enrichment: EnrichmentSettings | None = None
    backend_config: dict[str, Any] = field(default_factory=dict)  # the `generate.backend` section
    out_dir: str = "."
    prompts_dir: str | None = None
    backend: Backend | None = None
    # CPUs Ray reserves per worker; GPUs come from the backend config.
    worker_cpus: float = 1.0
    # Workers on Ray (e.g. one per GPU); None: Ray Data's autoscaling pool.
    workers: int | None = None
    # Shards handed to one process_batch call (Curator's batch_size).
    shards_per_call: int = 8
    name: str = "generate_and_enrich"

    def num_workers(self) -> int | None:
        return self.workers

    def ray_stage_spec(self) -> dict[str, Any]:
        return shards.ray_actor_spec(super().ray_stage_spec())  # workers on every node

    def __post_init__(self) -> None:
        self.resources = Resources(cpus=float(self.worker_cpus), gpus=engine_gpus(self.backend_config))
        self.batch_size = int(self.shards_per_call)
        self._owns_backend = self.backend is None

    def setup(self, worker_metadata=None) -> None:
        if self.backend is None:
            self.backend = build_backend(self.backend_config)
        templates = load_templates(self.prompts_dir)
        self.questions = SimilarQuestions(self.generation, templates, self.backend.model)
        self.answers = AnswerEnrichment(
            self.enrichment, self.generation.structured_outputs, templates, self.backend.model
        )

    def teardown(self) -> None:
        if self._owns_backend and self.backend is not None:
            self.backend.close()
            self.backend = None

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS

    def shard_cache(self, shard: str, stage: str) -> RequestCache:
        """The shard's own cache file per pass: one writer, for one shard, closed after the call."""
        return RequestCache.for_shard(Path(self.out_dir) / "cache", shard, stage)

    def process(self, task: DocumentBatch) -> DocumentBatch:
        return self.process_batch([task])[0]

    def process_batch(self, tasks: list[DocumentBatch]) -> list[DocumentBatch]:
        names = [t._metadata["shard"] for t in tasks]
        plans = {
            name: self.questions.plan([rec for kind, rec in from_batch(t) if kind == "seed"])
            for name, t in zip(names, tasks)
        }
        seeds_asking: dict[tuple[str, str], list[int]] = {}  # (shard, request key) -> seed positions
        for name in names:
            for i, plan in enumerate(plans[name]):
                seeds_asking.setdefault((name, plan.request.key), []).append(i)
        parsed: dict[str, dict[int, list]] = {name: {} for name in names}

        def enrich_when_generated(group, request, reply) -> dict:
            shard, stage = group
            if stage != "generate":
                return {}
            follow = []
            for i in seeds_asking[(shard, request.key)]:
                parsed[shard][i] = self.questions.parse(plans[shard][i], reply)
                follow += [self.answers.request(c.item) for c in parsed[shard][i] if isinstance(c, Candidate)]
            return {(shard, "enrich"): [r for r in follow if r is not None]}

        caches = {(name, stage): self.shard_cache(name, stage) for name in names for stage in PASSES}
        started = time.monotonic()
        try:
            answered = run_requests(
                {(name, "generate"): [p.request for p in plans[name]] for name in names},
                self.backend,
                caches,
                desc="generate+enrich",
                follow_up=enrich_when_generated,
            )
        finally:
            for cache in caches.values():
                cache.close()
        seconds = time.monotonic() - started
        node = shards.worker_identity()["node_id"]
        out = []
        for name, task in zip(names, tasks):
            items = self.questions.finish([parsed[name][i] for i in range(len(plans[name]))])
            rows = self.answers.finish(items, answered[(name, "enrich")].results)
            meta = {**task._metadata, "seeds": len(plans[name])}
            for stage in PASSES:
                meta[f"requests.{stage}"] = answered[(name, stage)].stats.as_dict()
                meta[f"usage.{stage}"] = _usage_with_time(answered, (name, stage), seconds, self.resources.gpus)
                meta[f"node.{stage}"] = node
            out.append(to_batch(rows, task.dataset_name, meta))
        return out


def _usage_with_time(answered: dict[Any, GroupResult], group: Any, seconds: float, gpus: float) -> dict[str, float]:
    """The group's (one shard's pass's) token usage plus its share of the call's wall time and GPU
    time (by completion tokens; every pass of every shard shares the engine, so this is the
    additive way to split it), for cost accounting."""
    usage = answered[group].usage.as_dict()
    tokens = {g: r.usage.completion_tokens for g, r in answered.items()}
    total = sum(tokens.values())
    share = (
        tokens[group] / total
        if total
        else (1.0 / len(answered) if any(r.stats.sent for r in answered.values()) else 0.0)
    )
    return {**usage, "seconds": round(seconds * share, 3), "gpu_seconds": round(seconds * share * float(gpus or 0), 3)}


def log_summary(summary: dict) -> None:
    logger.info(
        "generate: {} seeds -> {} items, {} records kept; dropped: {}",
        summary["seeds"],
        summary["items_kept"],
        summary["records_kept"],
        summary["dropped"] or "none",
    )
    usage = summary.get("backend", {}).get("usage", {})
    if usage.get("retries"):  # OpenAI endpoints: transient errors backed off (llm/backends.py)
        logger.warning(
            "generate: {} requests sent again, {} after HTTP 429", usage["retries"], usage.get("rate_limited", 0)
        )
