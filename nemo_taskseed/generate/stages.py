"""Stages 3 and 4 as NeMo Curator ProcessingStages over one shard of seeds at a time.

    shard task (seed file offsets)
      -> ReadSeedShardStage          the shard's seeds
      -> GenerateAndEnrichStage      SimilarQuestions (stage 3): candidate items + rejections;
                                     AnswerEnrichment (stage 4): one record per variant
                                     (kind=generated) + rejections; both on one engine, one
                                     request stream, enrichment starting per seed
      -> GeneratedShardWriterStage   generated/part-<shard>.jsonl, rejected/part-<shard>.jsonl,
                                     then the done marker shards/<shard>.json

Rows between stages are `id`, `kind` and `record` (the record as a JSON string): records are
nested and differ per benchmark (`raw`, `source`), which neither Arrow nor pandas keeps intact
across Ray's hand-offs as columns; a JSON column round-trips exactly.

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

from nemo_taskseed.config import section_settings
from nemo_taskseed.errors import UserError
from nemo_taskseed.generate.language import language_mismatch
from nemo_taskseed.generate.parsers import Rejected, is_copy, normalize, parse_enrichment, parse_item, reply_schema
from nemo_taskseed.generate.prompts import enrich_fields, load_templates, seed_fields, select_template_id
from nemo_taskseed.generate.render import render_text
from nemo_taskseed.llm.backends import Backend, build_backend, engine_gpus
from nemo_taskseed.llm.cache import RequestCache
from nemo_taskseed.llm.requests import GroupResult, Request, check_sampling, make_request, run_requests, sampling_of
from nemo_taskseed.pipeline import shards
from nemo_taskseed.schema.generated import ENRICHED_VARIANTS, GENERATED_SCHEMA_VERSION, VARIANTS
from nemo_taskseed.schema.records import content_id
from nemo_taskseed.schema.rejected import rejected as _reject  # the one rejected-line shape

COLUMNS = ["id", "kind", "record"]


# ---------------------------------------------------------------------------------------------
# Typed settings (defaults live in configs/base/generate.yaml and enrich.yaml, nowhere else)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationSettings:
    """`generate.*` keys that shape what stage 3 asks and keeps."""

    sampling: dict[str, Any]
    structured_outputs: bool
    prompts_dir: str | None
    templates: dict[str, str]
    examples_per_prompt: int
    copy_similarity: float
    min_question_words: int
    check_language: bool
    shards_per_call: int

    @classmethod
    def from_config(cls, cfg: Any) -> GenerationSettings:
        values = section_settings(cls, cfg, "generate")
        if int(values["shards_per_call"]) < 1:
            raise UserError(f"generate.shards_per_call must be >= 1, got {values['shards_per_call']}")
        sampling = check_sampling(sampling_of(values["sampling"], "generate.sampling"), "generate.sampling")
        return cls(**{**values, "sampling": sampling, "templates": dict(values["templates"] or {})})


@dataclass(frozen=True)
class EnrichmentSettings:
    """`enrich.*` keys: the second pass and the variants written per item."""

    enabled: bool
    template: str
    sampling: dict[str, Any]
    variants: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: Any) -> EnrichmentSettings:
        values = section_settings(cls, cfg, "enrich")
        variants = tuple(values["variants"])
        bad = [v for v in variants if v not in VARIANTS]
        if bad:
            raise UserError(f"enrich.variants: unknown {bad}; choose from {', '.join(VARIANTS)}")
        if not values["enabled"] and any(v in ENRICHED_VARIANTS for v in variants):
            raise UserError("enrich.enabled is false but enrich.variants asks for reasoning/context")
        return cls(
            **{
                **values,
                "sampling": check_sampling(sampling_of(values["sampling"], "enrich.sampling"), "enrich.sampling"),
                "variants": variants,
            }
        )

    @property
    def needs_pass(self) -> bool:
        return self.enabled and any(v in ENRICHED_VARIANTS for v in self.variants)


# ---------------------------------------------------------------------------------------------
# Batches <-> records
# ---------------------------------------------------------------------------------------------


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
# The two passes (plain logic, no engine): stage 3 generation and stage 4 enrichment
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedPlan:
    """One seed's generation request and what its replies are judged against."""

    seed: dict
    template: Any
    examples: list[dict]
    request: Request


@dataclass(frozen=True)
class Candidate:
    """A parsed item of one seed, not yet checked against the shard's other items."""

    item: dict
    item_id: str
    question_key: str
    lineage: dict


@dataclass
class SimilarQuestions:
    """Stage 3 for one shard: for each seed, pick its prompt template and ask for `n` new items
    exercising the same capability on different content; parse every reply strictly and drop
    garbage with a reason.

    Replies are parsed per seed (`parse`) as each arrives, so its items can go to enrichment at
    once; duplicates across seeds are decided at the end (`finish`), in seed order, so what is
    kept does not depend on which reply came first.
    """

    settings: GenerationSettings
    templates: dict[str, Any]
    model: str

    def _template_for(self, seed: dict):
        tid = select_template_id(seed, self.settings.templates)
        if tid not in self.templates:
            raise UserError(f"prompt template {tid!r} (for task {seed['task']}) not found in configs/prompts")
        return self.templates[tid]

    def _examples(self, seed: dict, by_task: dict[str, list[dict]]) -> list[dict]:
        k = self.settings.examples_per_prompt
        if k <= 0:
            return []
        # Deterministic few-shot: the other seeds of the task in this shard, ranked by a hash of the pair.
        others = [s for s in by_task.get(seed["task"], []) if s["id"] != seed["id"]]
        others.sort(key=lambda s: content_id(seed["id"], s["id"]))
        return others[:k]

    def plan(self, seeds: list[dict]) -> list[SeedPlan]:
        gen = self.settings
        by_task: dict[str, list[dict]] = {}
        for s in seeds:
            by_task.setdefault(s["task"], []).append(s)
        plans = []
        for seed in seeds:
            template = self._template_for(seed)
            examples = self._examples(seed, by_task)
            messages = template.render(**seed_fields(seed, template, examples))
            schema = (
                reply_schema(template.output, len(seed.get("options") or []), bool(seed.get("context")))
                if gen.structured_outputs
                else None
            )
            plans.append(SeedPlan(seed, template, examples, make_request(messages, self.model, gen.sampling, schema)))
        return plans

    def parse(self, plan: SeedPlan, result: dict) -> list[Candidate | tuple[str, str, dict]]:
        """One seed's reply: its candidates and its rejected rows, in sample order."""
        gen, seed, template, request = self.settings, plan.seed, plan.template, plan.request
        if result.get("error"):
            row = _reject(
                "generate",
                "request_refused",
                result["error"],
                seed_id=seed["id"],
                template_id=template.id,
                request_key=request.key,
            )
            return [(seed["id"], "rejected", row)]
        entries: list[Candidate | tuple[str, str, dict]] = []
        for index, raw in enumerate(result["outputs"]):
            lineage = {
                "seed_id": seed["id"],
                "seed_task": seed["task"],
                "template_id": template.id,
                "template_version": template.version,
                "model": self.model,
                "backend": result["backend"],
                "sampling": gen.sampling,
                "request_key": request.key,
                "sample_index": index,
                "raw_output": raw,
                "structured_outputs": gen.structured_outputs,
                "example_seed_ids": [e["id"] for e in plan.examples],
            }
            parsed = parse_item(template.output, raw, seed, index, min_question_words=gen.min_question_words)
            if isinstance(parsed, Rejected):
                entries.append((seed["id"], "rejected", _reject("generate", parsed.reason, parsed.detail, **lineage)))
                continue
            mismatch = language_mismatch(seed, parsed) if gen.check_language else None
            if mismatch:
                entries.append((seed["id"], "rejected", _reject("generate", "wrong_language", mismatch, **lineage)))
                continue
            if is_copy(parsed, seed, gen.copy_similarity) or any(
                is_copy(parsed, e, gen.copy_similarity) for e in plan.examples
            ):
                entries.append((seed["id"], "rejected", _reject("generate", "copy_of_seed", "", **lineage)))
                continue
            item = {"family": seed["family"], "task": seed["task"], "kind": seed["kind"], "license": seed["license"]}
            item.update(parsed)
            item_id = content_id(
                item["family"],
                item["task"],
                item["question"],
                item["context"],
                item["options"],
                item["answer_index"],
                item["answer_text"],
                item["reference"],
                item["tests"],
            )
            entries.append(Candidate(item, item_id, normalize(item["question"]), lineage))
        return entries

    def finish(self, parsed: list[list[Candidate | tuple[str, str, dict]]]) -> list[tuple[str, str, dict]]:
        """The shard's rows (kind=item or rejected) from every seed's `parse`, in seed order."""
        rows: list[tuple[str, str, dict]] = []
        seen_items: set[str] = set()
        for entries in parsed:
            seen_questions: set[str] = set()
            for entry in entries:
                if not isinstance(entry, Candidate):
                    rows.append(entry)
                    continue
                if entry.item_id in seen_items or entry.question_key in seen_questions:
                    rows.append(
                        (entry.lineage["seed_id"], "rejected", _reject("generate", "duplicate", "", **entry.lineage))
                    )
                    continue
                seen_items.add(entry.item_id)
                seen_questions.add(entry.question_key)
                item = dict(entry.item, lineage={**entry.lineage, "item_id": entry.item_id})
                rows.append((entry.item_id, "item", item))
        return rows


@dataclass
class AnswerEnrichment:
    """Stage 4: one generated record per configured variant for each item.

    Variants `reasoning` and `context` need an explanation (reasoning, why each alternative fails,
    connecting knowledge) from a second request per item; `label` and `answer` do not.
    """

    settings: EnrichmentSettings
    structured_outputs: bool
    templates: dict[str, Any]
    model: str

    def request(self, item: dict) -> Request | None:
        """The item's enrichment request (its content only: equal items ask the same), or None."""
        if not self.settings.needs_pass:
            return None
        template = self.templates[self.settings.template]
        schema = reply_schema("enrichment", len(item.get("options") or [])) if self.structured_outputs else None
        return make_request(template.render(**enrich_fields(item)), self.model, self.settings.sampling, schema)

    def finish(self, rows_in: list[tuple[str, str, dict]], results: dict[str, dict]) -> list[tuple[str, str, dict]]:
        """Generation's rows (items and rejections) in; records (kind=generated) and rejections out."""
        enrich = self.settings
        variants = enrich.variants
        items = [rec for _, kind, rec in rows_in if kind == "item"]
        rows: list[tuple[str, str, dict]] = [
            (r.get("seed_id", ""), "rejected", r) for _, k, r in rows_in if k == "rejected"
        ]

        enrichments: dict[str, dict | Rejected] = {}
        if enrich.needs_pass:
            template = self.templates[enrich.template]
            for item in items:
                item_id = item["lineage"]["item_id"]
                req = self.request(item)
                result = results[req.key]
                raw = result["outputs"][0] if result["outputs"] else ""
                if result.get("error"):
                    parsed = Rejected("request_refused", result["error"])
                else:
                    parsed = parse_enrichment(raw, item)
                if not isinstance(parsed, Rejected):
                    parsed["lineage"] = {
                        "template_id": template.id,
                        "template_version": template.version,
                        "model": self.model,
                        "backend": result["backend"],
                        "sampling": enrich.sampling,
                        "request_key": req.key,
                        "raw_output": raw,
                    }
                else:
                    parsed.detail = parsed.detail or raw[:80]
                    parsed.raw = raw  # type: ignore[attr-defined]
                    parsed.key = req.key  # type: ignore[attr-defined]
                enrichments[item_id] = parsed

        for item in items:
            item_id = item["lineage"]["item_id"]
            enrichment = enrichments.get(item_id)
            if isinstance(enrichment, Rejected):
                rows.append(
                    (
                        item["lineage"]["seed_id"],
                        "rejected",
                        _reject(
                            "enrich",
                            enrichment.reason,
                            enrichment.detail,
                            seed_id=item["lineage"]["seed_id"],
                            item_id=item_id,
                            variants=[v for v in variants if v in ENRICHED_VARIANTS],
                            request_key=enrichment.key,  # type: ignore[attr-defined]
                            raw_output=enrichment.raw,  # type: ignore[attr-defined]
                        ),
                    )
                )
                enrichment = None
            for variant in variants:
                if variant == "label" and item["format"] != "multiple_choice":
                    # A generative item's label IS its answer: the document would repeat `answer` byte for byte.
                    continue
                if variant in ENRICHED_VARIANTS:
                    if enrichment is None:
                        continue  # counted once above, per item
                    if variant == "context" and not enrichment.get("knowledge"):
                        rows.append(
                            (
                                item["lineage"]["seed_id"],
                                "rejected",
                                _reject(
                                    "enrich",
                                    "enrichment_no_knowledge",
                                    "",
                                    seed_id=item["lineage"]["seed_id"],
                                    item_id=item_id,
                                    variants=["context"],
                                ),
                            )
                        )
                        continue
                record = {
                    "schema_version": GENERATED_SCHEMA_VERSION,
                    "id": content_id(item_id, variant),
                    "seed_id": item["lineage"]["seed_id"],
                    "family": item["family"],
                    "task": item["task"],
                    "kind": item["kind"],
                    "format": item["format"],
                    "question": item["question"],
                    "context": item["context"],
                    "options": item["options"],
                    "answer_index": item["answer_index"],
                    "answer_text": item["answer_text"],
                    "reference": item["reference"],
                    "tests": item["tests"],
                    "license": item["license"],
                    "lineage": item["lineage"],
                    "enrichment": enrichment if enrich.needs_pass else None,
                    "variant": variant,
                    "text": render_text(item, variant, enrichment),
                }
                rows.append((record["id"], "generated", record))
        return rows


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
