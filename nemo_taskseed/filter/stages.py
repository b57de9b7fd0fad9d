"""The filter stages as NeMo Curator ProcessingStages, one shard (one generated part file) per task.

    phase 1, per shard:  ReadFilterShardStage -> SchemaValidationStage -> DecontaminationStage
                         -> SemanticDecontaminationStage
                         -> DedupSignatureStage -> ScreenedShardWriterStage
    phase 2, global:     dedup.sharded.resolve over every shard's signatures (the driver)
    phase 3, per shard:  ApplyDropsStage -> VerificationStage -> SchemaValidationStage(final_schema)
                         -> CuratedShardWriterStage

Seeds travel through phase 1 as reference shards (one per seeds file, `kind: seeds`): they are
checked against the benchmarks and hashed for dedup, never filtered. Cheap, model-free checks run
first, so the model only votes on items that survived them.

Every stage reads and writes the verdict columns of `nemo_taskseed.filter.records`; none removes
rows. Per-stage counts are computed by the writer from the verdicts, so they add up across shards.
"""

from __future__ import annotations

import functools
import json
import logging
import pickle
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import DocumentBatch

from nemo_taskseed.filter.dedup.sharded import DedupSettings, signatures_for
from nemo_taskseed.filter.quality.explanation import ExplanationSettings
from nemo_taskseed.filter.records import (
    COLUMNS,
    KEPT,
    annotate,
    as_objects,
    frame_from_lines,
    kept_items,
    kept_mask,
    kept_rows,
    parsed_records,
    records_to_frame,
    reject,
    split_frame,
)
from nemo_taskseed.filter.semantic.check import SemanticSettings
from nemo_taskseed.filter.text import record_fields_text
from nemo_taskseed.filter.verify import CodeSettings, VoteSettings
from nemo_taskseed.llm.backends import build_backend
from nemo_taskseed.pipeline import shards
from nemo_taskseed.utils.jsonl import atomic_path, iter_jsonl, write_lines_digest

log = logging.getLogger(__name__)

DECONTAM_FIELDS = ["context", "question", "options", "answer_text", "reference", "tests", "enrichment", "text"]
SEED_DECONTAM_FIELDS = ["context", "question", "options", "answer_text", "references"]
# Pipeline order of the stages that reject rows (for per-stage counts and the quality report).
STAGE_ORDER = (
    "read",
    "schema",
    "text_quality",
    "item_rules",
    "explanation",
    "decontam",
    "semantic_decontam",
    "exact_dedup",
    "fuzzy_dedup",
    "semantic_dedup",
    "verify",
    "final_schema",
)


def _is_seeds(task: DocumentBatch) -> bool:
    return task._metadata.get("kind") == "seeds"


@functools.lru_cache(maxsize=2)
def load_decontam_index(path: str, mtime_ns: int):
    """The benchmark n-gram index the driver built once and pickled beside the work files; each
    worker process loads it once (keyed by mtime, so a rebuilt index is reloaded)."""
    with open(path, "rb") as handle:
        return pickle.load(handle)


class _FilterStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Shared bookkeeping: work on the kept rows of a generated shard; seed shards pass through."""

    name = "filter_stage"
    resources = Resources(cpus=1.0)

    def ray_stage_spec(self) -> dict[str, Any]:
        # Model-free: a Ray task spread over the nodes, fused with its neighbours (see shards.ray_task_spec);
        # state such as the decontamination index is loaded once per worker process instead of in setup().
        return shards.ray_task_spec(super().ray_stage_spec())

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], ["id", "record", "status"]

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS

    def process(self, task: DocumentBatch) -> DocumentBatch:
        if _is_seeds(task):
            return self.process_seeds(task)
        df = task.to_pandas().copy()
        before = int(kept_mask(df).sum())
        self.filter_frame(df)
        log.info("%s %s: %d in, %d kept", self.name, task.dataset_name, before, int(kept_mask(df).sum()))
        # Same task object: the framework owns task ids and stage timings.
        task.data = df
        return task

    def process_seeds(self, task: DocumentBatch) -> DocumentBatch:
        return task

    def filter_frame(self, df: pd.DataFrame) -> None:
        raise NotImplementedError


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
        path = str(task.to_pandas()["file"].iloc[0])
        if _is_seeds(task):
            # Seeds are references: status `seed`, never `kept`, so no filter touches them.
            data = records_to_frame([obj for _, obj, error in iter_jsonl(path) if error is None], keep_parsed=True)
            data["status"] = "seed"
        else:
            data = frame_from_lines(path, self.max_record_bytes)
        return DocumentBatch(dataset_name=task.dataset_name, data=data, _metadata=dict(task._metadata))


@dataclass
class SchemaValidationStage(_FilterStage):
    """Reject records that break taskseed.generated/1, naming the failing field."""

    name: str = "schema"

    def setup(self, worker_metadata=None) -> None:
        from nemo_taskseed.schema.generated import validate_generated

        self._validate = validate_generated

    def filter_frame(self, df: pd.DataFrame) -> None:
        from nemo_taskseed.filter.validate import failing_field

        if not hasattr(self, "_validate"):
            self.setup()
        records = parsed_records(df)
        for pos in kept_mask(df).to_numpy().nonzero()[0]:
            record, annotations = records[pos], df["annotations"].iat[pos]
            if annotations and annotations != "{}":
                record = {**record, **json.loads(annotations)}
            idx = df.index[pos]
            errors = self._validate(record)
            if errors:
                reject(df, idx, self.name, f"invalid:{failing_field(errors)}", {"errors": errors[:5]})


class _ItemCheckStage(_FilterStage):
    """A rule check per item (all its variants share the content): a failure on the item itself
    rejects every variant; a failure only in its enrichment rejects the documents that show the
    enrichment (`reasoning`, `context`), keeping `label`/`answer` (or every variant when
    `enrichment_failure` is `drop`). Reasons: `<check>:<field>` for text checks, `<check>` here."""

    enrichment_failure: str = "strip"

    def item_failures(self, record: dict[str, Any]) -> list[tuple[str, bool, dict[str, Any]]]:
        """[(reason, only_the_enrichment, detail)]"""
        raise NotImplementedError

    def filter_frame(self, df: pd.DataFrame) -> None:
        from nemo_taskseed.schema.generated import ENRICHED_VARIANTS

        records = parsed_records(df)
        reps, members = kept_items(df)
        for rep in reps:
            record = records[df.index.get_loc(rep)]
            failures = self.item_failures(record)
            if not failures:
                continue
            item_level = [f for f in failures if not f[1]]
            reason, _, _ = (item_level or failures)[0]
            detail = {"failures": [{"reason": r, **d} for r, _, d in failures]}
            for idx in members[rep]:
                variant = records[df.index.get_loc(idx)].get("variant")
                if item_level or self.enrichment_failure == "drop" or variant in ENRICHED_VARIANTS:
                    reject(df, idx, self.name, reason, detail)


@dataclass
class TextQualityStage(_ItemCheckStage):
    """Curator's heuristic filters on every generated field (filter.quality.checks)."""

    name: str = "text_quality"
    checks: list[dict[str, Any]] = field(default_factory=list)
    enrichment_failure: str = "strip"

    def setup(self, worker_metadata=None) -> None:
        from nemo_taskseed.filter.quality import build_checks

        self._checks = build_checks(self.checks)

    def item_failures(self, record: dict[str, Any]) -> list[tuple[str, bool, dict[str, Any]]]:
        from nemo_taskseed.filter.quality import ENRICHMENT_FIELDS, text_failures

        if not hasattr(self, "_checks"):
            self.setup()
        return [
            (f"{f['check']}:{f['field']}", f["field"] in ENRICHMENT_FIELDS, f)
            for f in text_failures(record, self._checks)
        ]


@dataclass
class ItemRulesStage(_ItemCheckStage):
    """Is the item a well-formed question? (duplicate options, answer in the question, math
    answers without a number or with false arithmetic; filter/quality/items.py)"""

    name: str = "item_rules"
    families: dict[str, str] = field(default_factory=dict)
    task_kinds: dict[str, str] = field(default_factory=dict)

    def item_failures(self, record: dict[str, Any]) -> list[tuple[str, bool, dict[str, Any]]]:
        from nemo_taskseed.filter.quality import item_failures

        return [(f["check"], False, f) for f in item_failures(record, self.families, self.task_kinds)]


@dataclass
class ExplanationStage(_ItemCheckStage):
    """The enrichment must explain the item's own answer (filter.quality.explanation)."""

    name: str = "explanation"
    settings: ExplanationSettings | None = None  # filter.quality.explanation (required)
    enrichment_failure: str = "strip"

    def item_failures(self, record: dict[str, Any]) -> list[tuple[str, bool, dict[str, Any]]]:
        from nemo_taskseed.filter.quality import explanation_failures

        return [(f["check"], True, f) for f in explanation_failures(record, self.settings)]


@dataclass
class DecontaminationStage(_FilterStage):
    """Drop records sharing a word n-gram with a scored benchmark split; list the seeds that do.

    The index is built once by the driver and loaded here from `index_path` (pickled), so every
    worker checks against the same index without rebuilding it.
    """

    name: str = "decontam"
    index_path: str = ""
    fields: list[str] = field(default_factory=lambda: list(DECONTAM_FIELDS))
    seed_fields: list[str] = field(default_factory=lambda: list(SEED_DECONTAM_FIELDS))

    def setup(self, worker_metadata=None) -> None:
        self._index = load_decontam_index(self.index_path, Path(self.index_path).stat().st_mtime_ns)

    @staticmethod
    def _hit_detail(hit) -> dict[str, Any]:
        detail = {
            "benchmark": hit.row.benchmark,
            "split": hit.row.split,
            "row": hit.row.row,
            "ngram": hit.ngram,
            "n_matching_ngrams": hit.n_matches,
        }
        if hit.row.view != "raw":  # matched lm-eval's rendered prompt, not the raw row
            detail["view"] = hit.row.view
        return detail

    def filter_frame(self, df: pd.DataFrame) -> None:
        if not hasattr(self, "_index"):
            self.setup()
        records = parsed_records(df)
        memo: dict[str, Any] = {}  # the variants of an item repeat most strings: check each once
        for pos in kept_mask(df).to_numpy().nonzero()[0]:
            idx = df.index[pos]
            hit = self._index.check(record_fields_text(records[pos], self.fields), memo=memo)
            if hit is not None:
                reject(df, idx, self.name, "benchmark_overlap", self._hit_detail(hit))

    def process_seeds(self, task: DocumentBatch) -> DocumentBatch:
        if not hasattr(self, "_index"):
            self.setup()
        hits = []
        for seed in parsed_records(task.to_pandas()):
            hit = self._index.check(record_fields_text(seed, self.seed_fields))
            if hit is not None:
                hits.append(
                    {
                        "seed_id": seed.get("id"),
                        "family": seed.get("family"),
                        "task": seed.get("task"),
                        **self._hit_detail(hit),
                    }
                )
        task._metadata = {**task._metadata, "contaminated_seeds": hits}
        return task


@functools.lru_cache(maxsize=2)
def load_semantic_index(prefix: str, mtime_ns: int):
    """The benchmark embedding index the driver built once (`<work>/semantic_index.faiss/.json`),
    loaded once per worker process (keyed by mtime, so a rebuilt index is reloaded)."""
    from nemo_taskseed.filter.semantic import SemanticIndex

    return SemanticIndex.load(Path(prefix))


@dataclass
class SemanticDecontaminationStage(_FilterStage):
    """Drop items whose nearest scored benchmark item by embedding is at or above the cosine
    threshold (paraphrases that share no 13-gram), after the optional LLM judge confirms.

    One check per item (its variants share question and options). Every flagged pair is recorded
    with both texts, the score and the verdict: in the rejection detail when dropped, as the
    `semantic_match` annotation when the judge kept it (both reach contamination_report.json).
    With `save_dir`, the embeddings of the items still kept (seed shards: of the seeds) are saved
    as `<save_dir>/<shard>.npy/.json` for semantic dedup and the diversity metrics; without
    `index_prefix` the stage only embeds and saves (semantic decontamination off).
    """

    name: str = "semantic_decontam"
    index_prefix: str = ""
    settings: SemanticSettings | None = None  # filter.decontam.semantic (required)
    save_dir: str = ""
    # Injected judge backend (tests, notebooks); else built from settings.judge.backend.
    judge_backend: Any = None
    # Where each shard's judge request cache lives (the filter's `cache/`); None: no cache.
    cache_dir: str = ""

    def __post_init__(self) -> None:
        # On Ray a worker sees a GPU only when its stage declares one (settings.gpus).
        if self.settings is None:
            raise ValueError("SemanticDecontaminationStage needs settings (filter.decontam.semantic)")
        self.resources = Resources(cpus=1.0, gpus=float(self.settings.gpus))

    def setup(self, worker_metadata=None) -> None:
        from nemo_taskseed.filter.semantic import Embedder

        self._index = (
            load_semantic_index(self.index_prefix, Path(self.index_prefix).with_suffix(".faiss").stat().st_mtime_ns)
            if self.index_prefix
            else None
        )
        self._embedder = Embedder(
            self.settings.model, self.settings.max_seq_length, self.settings.batch_size, self.settings.device
        )

    def _judge(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        from nemo_taskseed.filter.semantic.check import judge_pairs

        if self.judge_backend is None:
            backend_cfg = self.settings.judge["backend"]
            if not backend_cfg:
                raise ValueError("filter.decontam.semantic.judge.enabled is true but judge.backend is not set")
            self.judge_backend = build_backend(backend_cfg)
            self._owns_judge = True
        from nemo_taskseed.llm.requests import RequestSession

        # The shard's own cache, so a restarted shard does not ask again.
        with RequestSession.for_shard(self.cache_dir, getattr(self, "_shard", "shard"), "judge") as session:
            verdicts = judge_pairs(self.judge_backend, pairs, int(self.settings.judge["max_tokens"]), session)
        self._judge_requests = session.stats.as_dict()  # for the shard's marker (process())
        return verdicts

    def teardown(self) -> None:
        if getattr(self, "_owns_judge", False) and self.judge_backend is not None:
            self.judge_backend.close()
            self.judge_backend = None

    def _save(self, shard: str, embedded) -> None:
        if self.save_dir:
            embedded.save(Path(self.save_dir) / shard)

    def process(self, task: DocumentBatch) -> DocumentBatch:
        self._shard, self._judge_requests = task.dataset_name, None
        task = super().process(task)
        if self._judge_requests is not None:
            task._metadata["requests.judge"] = self._judge_requests
        return task

    def process_seeds(self, task: DocumentBatch) -> DocumentBatch:
        from nemo_taskseed.filter.semantic import item_text
        from nemo_taskseed.filter.semantic.store import Embedded

        if self.save_dir:
            if not hasattr(self, "_embedder"):
                self.setup()
            seeds = [s for s in parsed_records(task.to_pandas()) if s]
            texts = [item_text(s) for s in seeds]
            ids = [str(s.get("id", "")) for s in seeds]
            self._save(
                task.dataset_name,
                Embedded(
                    ids, ids, [str(s.get("family") or "unknown") for s in seeds], texts, self._embedder.embed(texts)
                ),
            )
        return task

    def filter_frame(self, df: pd.DataFrame) -> None:
        from nemo_taskseed.filter.semantic.check import DROP_VERDICTS, best_matches, decide, window_vectors
        from nemo_taskseed.filter.semantic.store import Embedded
        from nemo_taskseed.filter.semantic.views import item_windows

        if not hasattr(self, "_embedder"):
            self.setup()
        reps, members = kept_items(df)
        parsed = parsed_records(df)
        records = [parsed[df.index.get_loc(i)] or {} for i in reps]
        windows = [item_windows(r, self.settings.windows) for r in records]
        vectors = window_vectors(windows, self._embedder.embed)
        dropped: set[Any] = set()
        if self._index is not None and len(self._index) and reps:
            matches = best_matches(self._index, windows, vectors, self.settings.top_k)
            found = [(rep, d) for rep, m in zip(reps, matches) if (d := decide(m, self.settings)) is not None]
            judged = [k for k, (_, (_, verdict, _)) in enumerate(found) if verdict == "band"]
            answers = (
                self._judge([(found[k][1][0].window_text, found[k][1][0].hit.text) for k in judged]) if judged else []
            )
            verdicts = {k: v for k, v in zip(judged, answers)}
            for k, (rep, (match, verdict, extra)) in enumerate(found):
                answer = None
                if k in verdicts:
                    verdict, answer = verdicts[k]
                hit = match.hit
                high, low = self.settings.levels(hit.row.benchmark)
                detail = {
                    "benchmark": hit.row.benchmark,
                    "split": hit.row.split,
                    "row": hit.row.row,
                    "score": hit.score,
                    "threshold": high,
                    "review_threshold": low,
                    "verdict": verdict,
                    "item_text": match.window_text,
                    "window": match.window,
                    "benchmark_text": hit.text,
                    "benchmark_view": hit.view,
                    **extra,
                }
                if answer is not None:
                    detail["judge_answer"] = answer
                if verdict in DROP_VERDICTS:
                    dropped.add(rep)
                for idx in members[rep]:
                    if verdict in DROP_VERDICTS:
                        reject(df, idx, self.name, "benchmark_paraphrase", detail)
                    else:
                        annotate(df, idx, "semantic_match", detail)
        if self.save_dir:
            # The `item` window (question + sorted options) is what semantic dedup and diversity compare.
            keep = [k for k, rep in enumerate(reps) if rep not in dropped]
            self._save(
                getattr(self, "_shard", "shard"),
                Embedded(
                    [str(df.at[reps[k], "item_id"]) for k in keep],
                    [str(df.at[reps[k], "seed_id"]) for k in keep],
                    [str(df.at[reps[k], "family"]) for k in keep],
                    [windows[k][0][1] for k in keep],
                    np.stack([vectors[k][0] for k in keep]) if keep else np.zeros((0, self._embedder.dim), np.float32),
                ),
            )


@dataclass
class DedupSignatureStage(_FilterStage):
    """Exact hash, MinHash signature and LSH band hashes per kept item (seeds: per seed), saved
    as `<work>/dedup/<shard>.*` for the global resolution (`dedup.sharded.resolve`)."""

    name: str = "dedup_signatures"
    settings: DedupSettings | None = None
    work_dir: str = "."

    def _save(self, task: DocumentBatch, items: list, seeds: bool) -> None:
        prefix = Path(self.work_dir) / "dedup" / task.dataset_name
        signatures_for(items, self.settings, seeds=seeds).save(prefix)

    def filter_frame(self, df: pd.DataFrame) -> None:  # pragma: no cover - process() overrides
        raise AssertionError("DedupSignatureStage.process handles frames")

    def process(self, task: DocumentBatch) -> DocumentBatch:
        df = task.to_pandas()
        if _is_seeds(task):
            items = [(s.get("id", ""), s.get("id", ""), s) for s in parsed_records(df)]
            self._save(task, items, seeds=True)
            return task
        reps, _ = kept_items(df)  # one entry per item: its variants repeat the same question on purpose
        records = parsed_records(df)
        items = [(df.at[i, "item_id"], df.at[i, "seed_id"], records[df.index.get_loc(i)]) for i in reps]
        self._save(task, items, seeds=False)
        return task


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
        if _is_seeds(task):
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
class VerificationStage(_FilterStage):
    """Majority vote (multiple choice, math, short answer) and sandboxed tests (code).

    `backend`: a `nemo_taskseed.llm.Backend`; if None, `build_backend(backend_config)` is called
    on the worker at its first vote and closed in `teardown()`.
    """

    name: str = "verify"
    # `filter.verify.vote` / `filter.verify.code`; required once a shard has items of that kind.
    vote: VoteSettings | None = None
    code: CodeSettings | None = None
    families: dict[str, str] = field(default_factory=dict)
    task_kinds: dict[str, str] = field(default_factory=dict)
    backend_config: dict[str, Any] | None = None
    backend: Any = None
    keep_outputs: bool = False
    # Several verifier models voting together (backend sections); empty: the one backend above.
    panel: list[dict[str, Any]] = field(default_factory=list)
    # Injected panel members [(name, backend)] (tests, notebooks); else built from `panel`.
    panel_backends: list[tuple[str, Any]] | None = None
    drop_too_easy: bool = False
    # Where each shard's request cache lives (the filter's `cache/`); None: no cache (notebooks).
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        from nemo_taskseed.llm.backends import engine_gpus

        # In-process vLLM on a GPU node: each verification actor holds its engine's (or its
        # panel's engines') GPU(s).
        gpus = sum(engine_gpus(c) for c in self.panel) if self.panel else engine_gpus(self.backend_config)
        self.resources = Resources(cpus=1.0, gpus=gpus)

    def ray_stage_spec(self) -> dict[str, Any]:
        # An actor: the model (in-process vLLM) is built once per worker and kept; spread over nodes.
        return shards.ray_actor_spec(ProcessingStage.ray_stage_spec(self))

    def setup(self, worker_metadata=None) -> None:
        self._owns_backend = False

    def _backend(self):
        if self.backend is None:
            from nemo_taskseed.llm.backends import build_backend

            self.backend = build_backend(self.backend_config or {})
            self._owns_backend = True
        return self.backend

    def _members(self) -> list[tuple[str, Any]]:
        """The verifiers: the panel's models, or the one backend."""
        if self.panel_backends is not None:
            return list(self.panel_backends)
        if self.panel:
            if not getattr(self, "_panel", None):
                self._panel = [
                    (str(c.get("model") or f"member{i}"), build_backend(c)) for i, c in enumerate(self.panel)
                ]
            return self._panel
        backend = self._backend()
        return [(str(getattr(backend, "model", "verifier")), backend)]

    def teardown(self) -> None:
        if getattr(self, "_owns_backend", False) and self.backend is not None:
            self.backend.close()
            self.backend = None
        for _, member in getattr(self, "_panel", None) or []:
            member.close()
        self._panel = []

    def process(self, task: DocumentBatch) -> DocumentBatch:
        """The shard's votes go through its own request cache (`<cache_dir>/<shard>.verify.sqlite`,
        one writer: this worker), so a shard killed midway asks only what it had not asked; its
        request counts, token usage and model time go to the step's summary and cost."""
        from nemo_taskseed.llm.requests import RequestSession

        started = time.monotonic()
        with RequestSession.for_shard(self.cache_dir, task.dataset_name, "verify") as self._session:
            task = super().process(task)
        seconds = time.monotonic() - started
        task._metadata["requests.verify"] = self._session.stats.as_dict()
        task._metadata["usage.verify"] = {
            **self._session.usage.as_dict(),
            "seconds": round(seconds, 3),
            "gpu_seconds": round(seconds * float(self.resources.gpus or 0), 3),
        }
        return task

    def filter_frame(self, df: pd.DataFrame) -> None:
        from nemo_taskseed.filter.verify import panel_vote, run_code_tests
        from nemo_taskseed.registry import verifier_kind

        # One check per item (the representative row); all its variants share the verdict.
        reps, members = kept_items(df)
        records = parsed_records(df)
        groups: dict[str, list[Any]] = {}
        for idx in reps:
            task = str((records[df.index.get_loc(idx)] or {}).get("task"))
            kind = verifier_kind(df.at[idx, "family"], df.at[idx, "format"], self.families, self.task_kinds.get(task))
            groups.setdefault(kind, []).append(idx)

        def settle(rep: Any, info: dict[str, Any], reason: str | None) -> None:
            for idx in members[rep]:
                annotate(df, idx, "verification", info)
                if reason:
                    reject(df, idx, self.name, reason, info)

        for rep in groups.pop("code", []):
            rec = records[df.index.get_loc(rep)]
            code, tests = rec.get("reference"), rec.get("tests") or []
            if not code or not tests:
                settle(rep, {"method": "code_tests", "status": "missing"}, "code_missing_solution_or_tests")
                continue
            if self.code is None:
                raise ValueError("VerificationStage.code (filter.verify.code) is needed to check code items")
            res = run_code_tests(code, tests, settings=self.code)
            settle(rep, {"method": "code_tests", **res.to_dict()}, None if res.passed else f"code_{res.status}")

        if groups and self.vote is None:
            raise ValueError("VerificationStage.vote (filter.verify.vote) is needed to vote on items")
        for kind, idxs in groups.items():
            batch = [records[df.index.get_loc(i)] for i in idxs]
            results = panel_vote(
                self._members(), batch, kind, self.vote, too_easy=self.drop_too_easy, session=self._session
            )
            for rep, res in zip(idxs, results):
                info = res.to_dict(keep_outputs=self.keep_outputs)
                if res.target is None:
                    settle(rep, info, f"{kind}_no_reference_answer")
                elif not res.passed:
                    settle(rep, info, f"{kind}_vote_disagrees")
                else:
                    settle(rep, info, f"{kind}_too_easy" if res.too_easy else None)


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
    for stage in STAGE_ORDER:
        mine = df[(df["stage"] == stage) & (df["status"] != KEPT)]
        dropped = dict(Counter(mine["reason"]))
        counts[stage] = {"in": remaining, "kept": remaining - len(mine), "dropped": dropped}
        remaining -= len(mine)
    return counts
