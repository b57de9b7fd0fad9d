"""Stages 3 and 4 as NeMo Curator ProcessingStages: similar-question generation, answer enrichment.

Both stages read and write `DocumentBatch`es whose rows are `id`, `kind` and `record` (the record
as a JSON string). Records are nested and differ per benchmark (`raw`, `source`), which neither
Arrow nor pandas keeps intact across batches as columns; a JSON column round-trips exactly.

    seeds (kind=seed) -> SimilarQuestionStage -> items + rejected
                      -> AnswerEnrichmentStage -> generated (one per variant) + rejected

Each stage builds its backend in `setup()` (declaring GPUs for in-process vLLM) unless one is
handed in (`taskseed generate` shares one engine between both stages). Requests go through the
`RequestCache`, chunk by chunk, so a killed run resumes without re-sending finished requests.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from loguru import logger

from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import DocumentBatch

from nemo_taskseed.generate.backends import Backend, build_backend
from nemo_taskseed.generate.cache import RequestCache, request_key
from nemo_taskseed.generate.parsers import Rejected, is_copy, normalize, parse_enrichment, parse_item, reply_schema
from nemo_taskseed.generate.prompts import enrich_fields, load_templates, seed_fields, select_template_id
from nemo_taskseed.generate.render import render_text
from nemo_taskseed.schema.generated import ENRICHED_VARIANTS, GENERATED_SCHEMA_VERSION, VARIANTS
from nemo_taskseed.schema.records import content_id

COLUMNS = ["id", "kind", "record"]


# ---------------------------------------------------------------------------------------------
# Requests through the cache
# ---------------------------------------------------------------------------------------------


@dataclass
class Request:
    key: str
    messages: list[dict]
    sampling: dict[str, Any]
    json_schema: dict | None


@dataclass
class RequestStats:
    total: int = 0
    cached: int = 0
    sent: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def sampling_of(section: dict) -> dict[str, Any]:
    """The sampling parameters that shape a reply (and therefore belong in the request key)."""
    return {
        "n": int(section.get("n", 1)),
        "temperature": float(section.get("temperature", 0.0)),
        "top_p": float(section.get("top_p", 1.0)),
        "max_tokens": int(section.get("max_tokens", 512)),
        "seed": section.get("seed"),
    }


def make_request(messages, model: str, sampling: dict, json_schema: dict | None) -> Request:
    return Request(request_key(messages, model, sampling, json_schema), messages, sampling, json_schema)


def run_requests(
    requests: list[Request], backend: Backend, cache: RequestCache, *, chunk_size: int,
    stats: RequestStats, desc: str = "requests",
) -> dict[str, dict]:
    """{key: {"outputs": [...], "backend": name}} for every request; only cache misses are sent,
    committed to the cache one chunk at a time."""
    from tqdm import tqdm

    unique: dict[str, Request] = {}
    for r in requests:
        unique.setdefault(r.key, r)
    results = cache.get_many(list(unique))
    stats.total += len(unique)
    stats.cached += len(results)
    missing = [r for k, r in unique.items() if k not in results]
    if not missing:
        return results
    # Requests in one backend call share sampling; schemas go per request, so a batch can mix
    # 4- and 5-option multiple choice with math and code in one `LLM.chat` call.
    groups: dict[str, list[Request]] = {}
    for r in missing:
        groups.setdefault(json.dumps(r.sampling, sort_keys=True), []).append(r)
    with tqdm(total=len(missing), desc=desc, unit="req", leave=False) as bar:
        for group in groups.values():
            for start in range(0, len(group), chunk_size):
                chunk = group[start:start + chunk_size]
                s = chunk[0].sampling
                seed = s.get("seed")
                outputs = backend.chat(
                    [r.messages for r in chunk], n=s["n"], temperature=s["temperature"], top_p=s["top_p"],
                    max_tokens=s["max_tokens"], json_schemas=[r.json_schema for r in chunk],
                    # Per-request seeds derived from the key make sampling reproducible per request
                    # (where the backend honours them), whatever else shares the batch.
                    seeds=[None if seed is None else (int(seed) + int(r.key[:8], 16)) % 2**31 for r in chunk],
                )
                entries = {r.key: (out, backend.name) for r, out in zip(chunk, outputs)}
                cache.put_many(entries)
                stats.sent += len(chunk)
                for k, (out, name) in entries.items():
                    results[k] = {"outputs": out, "backend": name}
                bar.update(len(chunk))
    return results


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


def seeds_batch(seeds: list[dict], dataset_name: str = "seeds") -> DocumentBatch:
    return to_batch([(s["id"], "seed", s) for s in seeds], dataset_name)


def _reject(stage: str, reason: str, detail: str, **extra) -> dict:
    return {"stage": stage, "reason": reason, "detail": detail, **extra}


# ---------------------------------------------------------------------------------------------
# Stage 3: similar-question generation
# ---------------------------------------------------------------------------------------------


@dataclass
class _BackendStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Shared plumbing: config, backend (built in setup or injected), request cache."""

    cfg: dict[str, Any] = field(default_factory=dict)  # the full config (generate + enrich sections)
    cache_path: str = "requests.sqlite"
    backend: Backend | None = None
    stats: RequestStats = field(default_factory=RequestStats)

    def __post_init__(self) -> None:
        backend_cfg = self.cfg.get("generate", {}).get("backend", {})
        if backend_cfg.get("kind", "vllm") == "vllm":
            vllm = backend_cfg.get("vllm") or {}
            gpus = backend_cfg.get("gpus")
            if gpus is None:
                gpus = vllm.get("tensor_parallel_size", 1) if _cuda_available() else 0
            self.resources = Resources(cpus=1.0, gpus=float(gpus))
        else:
            self.resources = Resources(cpus=1.0)
        self._owns_backend = self.backend is None
        self._cache: RequestCache | None = None

    def setup(self, worker_metadata=None) -> None:
        if self.backend is None:
            self.backend = build_backend(self.cfg)
        self._cache = RequestCache(self.cache_path)
        self.templates = load_templates(self.cfg.get("generate", {}).get("prompts_dir"))

    def _add(self, stats: RequestStats) -> None:
        for k, v in stats.as_dict().items():
            setattr(self.stats, k, getattr(self.stats, k) + v)

    def teardown(self) -> None:
        if self._cache is not None:
            self._cache.close()
        if self._owns_backend and self.backend is not None:
            self.backend.close()
            self.backend = None

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


@dataclass
class SimilarQuestionStage(_BackendStage):
    """Seeds in; candidate items (kind=item) and rejections (kind=rejected) out.

    For each seed: pick its prompt template, ask for `n` new items exercising the same capability
    on different content, parse every reply strictly, drop garbage with a reason.
    """

    name: str = "similar_question_generation"

    def _template_for(self, seed: dict):
        gen = self.cfg.get("generate", {})
        tid = select_template_id(seed, gen.get("templates") or {})
        if tid not in self.templates:
            from nemo_taskseed.errors import UserError

            raise UserError(f"prompt template {tid!r} (for task {seed['task']}) not found in configs/prompts")
        return self.templates[tid]

    def _examples(self, seed: dict, by_task: dict[str, list[dict]]) -> list[dict]:
        k = int(self.cfg.get("generate", {}).get("examples_per_prompt", 0))
        if k <= 0:
            return []
        # Deterministic few-shot: the other seeds of the task ranked by a hash of the pair.
        others = [s for s in by_task.get(seed["task"], []) if s["id"] != seed["id"]]
        others.sort(key=lambda s: content_id(seed["id"], s["id"]))
        return others[:k]

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        gen = self.cfg.get("generate", {})
        sampling = sampling_of(gen.get("sampling", {}))
        structured = bool(gen.get("structured_outputs", True))
        threshold = float(gen.get("copy_similarity", 0.9))
        seeds = [rec for kind, rec in from_batch(batch) if kind == "seed"]
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
                if structured else None
            )
            plans.append((seed, template, examples, make_request(messages, self.backend.model, sampling, schema)))

        stats = RequestStats()
        results = run_requests([p[3] for p in plans], self.backend, self._cache,
                               chunk_size=int(gen.get("chunk_size", 32)), stats=stats, desc="generate")
        self._add(stats)

        rows: list[tuple[str, str, dict]] = []
        seen_items: set[str] = set()
        for seed, template, examples, request in plans:
            result = results[request.key]
            seen_questions: set[str] = set()
            for index, raw in enumerate(result["outputs"]):
                lineage = {
                    "seed_id": seed["id"], "seed_task": seed["task"], "template_id": template.id,
                    "template_version": template.version, "model": self.backend.model,
                    "backend": result["backend"], "sampling": sampling, "request_key": request.key,
                    "sample_index": index, "raw_output": raw, "structured_outputs": structured,
                    "example_seed_ids": [e["id"] for e in examples],
                }
                parsed = parse_item(template.output, raw, seed, index,
                                    min_question_words=int(gen.get("min_question_words", 3)))
                if isinstance(parsed, Rejected):
                    rows.append((seed["id"], "rejected", _reject("generate", parsed.reason, parsed.detail, **lineage)))
                    continue
                if is_copy(parsed, seed, threshold) or any(is_copy(parsed, e, threshold) for e in examples):
                    rows.append((seed["id"], "rejected", _reject("generate", "copy_of_seed", "", **lineage)))
                    continue
                item = {
                    "family": seed["family"], "task": seed["task"], "kind": seed["kind"],
                    "license": seed["license"], **parsed,
                }
                item_id = content_id(
                    item["family"], item["task"], item["question"], item["context"], item["options"],
                    item["answer_index"], item["answer_text"], item["reference"], item["tests"],
                )
                question_key = normalize(item["question"])
                if item_id in seen_items or question_key in seen_questions:
                    rows.append((seed["id"], "rejected", _reject("generate", "duplicate", "", **lineage)))
                    continue
                seen_items.add(item_id)
                seen_questions.add(question_key)
                item["lineage"] = {**lineage, "item_id": item_id}
                rows.append((item_id, "item", item))
        meta = {**batch._metadata, "requests.generate": stats.as_dict(), "usage.generate": self.backend.usage.as_dict()}
        return to_batch(rows, batch.dataset_name, meta)


# ---------------------------------------------------------------------------------------------
# Stage 4: answer enrichment and variant rendering
# ---------------------------------------------------------------------------------------------


@dataclass
class AnswerEnrichmentStage(_BackendStage):
    """Items in; one generated record per configured variant (kind=generated) and rejections out.

    Variants `reasoning` and `context` need an explanation (reasoning, why each alternative fails,
    connecting knowledge) from a second generation pass; `label` and `answer` do not.
    """

    name: str = "answer_enrichment"

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        enrich = self.cfg.get("enrich", {})
        variants = list(enrich.get("variants", ["answer", "reasoning"]))
        bad = [v for v in variants if v not in VARIANTS]
        if bad:
            from nemo_taskseed.errors import UserError

            raise UserError(f"enrich.variants: unknown {bad}; choose from {', '.join(VARIANTS)}")
        need_enrichment = bool(enrich.get("enabled", True)) and any(v in ENRICHED_VARIANTS for v in variants)
        if not enrich.get("enabled", True) and any(v in ENRICHED_VARIANTS for v in variants):
            from nemo_taskseed.errors import UserError

            raise UserError("enrich.enabled is false but enrich.variants asks for reasoning/context")

        rows_in = from_batch(batch)
        items = [rec for kind, rec in rows_in if kind == "item"]
        rows: list[tuple[str, str, dict]] = [(r.get("seed_id", ""), "rejected", r) for k, r in rows_in if k == "rejected"]

        enrichments: dict[str, dict | Rejected] = {}
        stats = RequestStats()
        if need_enrichment and items:
            template = self.templates[enrich.get("template", "enrich")]
            sampling = sampling_of(enrich.get("sampling", {}))
            structured = bool(self.cfg.get("generate", {}).get("structured_outputs", True))
            requests = {}
            for item in items:
                messages = template.render(**enrich_fields(item))
                schema = reply_schema("enrichment", len(item.get("options") or [])) if structured else None
                requests[item["lineage"]["item_id"]] = make_request(messages, self.backend.model, sampling, schema)
            results = run_requests(list(requests.values()), self.backend, self._cache,
                                   chunk_size=int(self.cfg.get("generate", {}).get("chunk_size", 32)),
                                   stats=stats, desc="enrich")
            self._add(stats)
            for item in items:
                item_id = item["lineage"]["item_id"]
                req = requests[item_id]
                raw = results[req.key]["outputs"][0] if results[req.key]["outputs"] else ""
                parsed = parse_enrichment(raw, item)
                if not isinstance(parsed, Rejected):
                    parsed["lineage"] = {
                        "template_id": template.id, "template_version": template.version,
                        "model": self.backend.model, "backend": results[req.key]["backend"],
                        "sampling": sampling, "request_key": req.key, "raw_output": raw,
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
                rows.append((item["lineage"]["seed_id"], "rejected", _reject(
                    "enrich", enrichment.reason, enrichment.detail, seed_id=item["lineage"]["seed_id"],
                    item_id=item_id, variants=[v for v in variants if v in ENRICHED_VARIANTS],
                    request_key=enrichment.key, raw_output=enrichment.raw)))  # type: ignore[attr-defined]
                enrichment = None
            for variant in variants:
                if variant in ENRICHED_VARIANTS:
                    if enrichment is None:
                        continue  # counted once above, per item
                    if variant == "context" and not enrichment.get("knowledge"):
                        rows.append((item["lineage"]["seed_id"], "rejected", _reject(
                            "enrich", "enrichment_no_knowledge", "", seed_id=item["lineage"]["seed_id"],
                            item_id=item_id, variants=["context"])))
                        continue
                record = {
                    "schema_version": GENERATED_SCHEMA_VERSION,
                    "id": content_id(item_id, variant),
                    "seed_id": item["lineage"]["seed_id"],
                    "family": item["family"], "task": item["task"], "kind": item["kind"],
                    "format": item["format"], "question": item["question"], "context": item["context"],
                    "options": item["options"], "answer_index": item["answer_index"],
                    "answer_text": item["answer_text"], "reference": item["reference"], "tests": item["tests"],
                    "license": item["license"], "lineage": item["lineage"],
                    "enrichment": enrichment if need_enrichment else None,
                    "variant": variant,
                    "text": render_text(item, variant, enrichment),
                }
                rows.append((record["id"], "generated", record))
        meta = {**batch._metadata, "requests.enrich": stats.as_dict(), "usage.enrich": self.backend.usage.as_dict()}
        return to_batch(rows, batch.dataset_name, meta)


def count_reasons(rejected: list[dict]) -> dict[str, int]:
    return dict(sorted(Counter(r["reason"] for r in rejected).items()))


def log_summary(summary: dict) -> None:
    logger.info(
        "generate: {} seeds -> {} items, {} records kept; dropped: {}",
        summary["seeds"], summary["items_kept"], summary["records_kept"], summary["dropped"] or "none",
    )
