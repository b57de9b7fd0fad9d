"""The filter stages as NeMo Curator ProcessingStages over one DocumentBatch of records.

Order in `build_stages`: schema -> exact dedup -> fuzzy dedup -> decontamination -> verification.
Cheap, model-free checks run first so the model only votes on items that survived them.

Every stage reads and writes the verdict columns of `nemo_taskseed.filter.records`; none removes
rows. Dedup compares every record with every other, so the whole run travels as one batch (fine
for the CPU path up to ~10^6 records; beyond that use the GPU workflows in `dedup/gpu.py`).
Per-stage counts go to `task._metadata["filter_stats"]`, which survives Ray's hand-offs.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import DocumentBatch

from nemo_taskseed.filter.records import KEPT, annotate, kept_items, kept_mask, read_records, reject
from nemo_taskseed.filter.text import record_fields_text

log = logging.getLogger(__name__)

DEDUP_FIELDS = ["context", "question", "options"]
DECONTAM_FIELDS = ["context", "question", "options", "answer_text", "reference", "tests", "enrichment", "text"]
SEED_DECONTAM_FIELDS = ["context", "question", "options", "answer_text", "references"]


def _load_seeds(seeds_dir: str | None) -> list[dict[str, Any]]:
    if not seeds_dir:
        return []
    path = Path(seeds_dir)
    if not path.is_dir():
        log.warning("seeds folder %s not found: dedup against seeds is skipped", path)
        return []
    return read_records(path, "seeds*.jsonl")


class _FilterStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Shared bookkeeping: work on the kept rows, record in/kept/dropped-by-reason."""

    name = "filter_stage"
    resources = Resources(cpus=1.0)

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], ["id", "record", "status"]

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], ["id", "record", "status", "stage", "reason", "detail", "annotations"]

    def process(self, task: DocumentBatch) -> DocumentBatch:
        df = task.to_pandas().copy()
        before = int(kept_mask(df).sum())
        self.filter_frame(df)
        mask_rejected_here = (df["stage"] == self.name) & (df["status"] != KEPT)
        stats = {
            "in": before,
            "kept": int(kept_mask(df).sum()),
            "dropped": dict(Counter(df.loc[mask_rejected_here, "reason"])),
            **self.extra_stats(),
        }
        log.info("%s: %d in, %d kept, dropped %s", self.name, stats["in"], stats["kept"], stats["dropped"] or "none")
        metadata = dict(task._metadata)
        metadata.setdefault("filter_stats", {})
        metadata["filter_stats"] = {**metadata["filter_stats"], self.name: stats}
        # Same task object: the framework owns task ids and stage timings.
        task.data = df
        task._metadata = metadata
        return task

    def filter_frame(self, df: pd.DataFrame) -> None:
        raise NotImplementedError

    def extra_stats(self) -> dict[str, Any]:
        return {}


@dataclass
class SchemaValidationStage(_FilterStage):
    """Reject records that break taskseed.generated/1, naming the failing field."""

    name: str = "schema"

    def setup(self, worker_metadata=None) -> None:
        from nemo_taskseed.filter.validate import generated_validator

        self._validate = generated_validator()

    def filter_frame(self, df: pd.DataFrame) -> None:
        from nemo_taskseed.filter.validate import failing_field

        if not hasattr(self, "_validate"):
            self.setup()
        for idx in df.index[kept_mask(df)]:
            record = json.loads(df.at[idx, "record"])
            record.update(json.loads(df.at[idx, "annotations"] or "{}"))
            errors = self._validate(record)
            if errors:
                reject(df, idx, self.name, f"invalid:{failing_field(errors)}", {"errors": errors[:5]})


@dataclass
class ExactDedupStage(_FilterStage):
    name: str = "exact_dedup"
    seeds_dir: str | None = None
    fields: list[str] = field(default_factory=lambda: list(DEDUP_FIELDS))

    def filter_frame(self, df: pd.DataFrame) -> None:
        from nemo_taskseed.filter.dedup import find_exact_duplicates

        # One entry per item: its variants repeat the same question on purpose.
        rows, members = kept_items(df)
        items = [(df.at[i, "id"], df.at[i, "seed_id"], json.loads(df.at[i, "record"])) for i in rows]
        for m in find_exact_duplicates(items, _load_seeds(self.seeds_dir), self.fields):
            detail = {"match_id": m.match_id}
            if m.reason == "exact_copy_of_seed":
                detail["own_seed"] = m.own_seed
            for idx in members[rows[m.position]]:
                reject(df, idx, self.name, m.reason, detail)


@dataclass
class FuzzyDedupStage(_FilterStage):
    """MinHash + LSH near-duplicates (datasketch): within the records and against the seeds."""

    name: str = "fuzzy_dedup"
    seeds_dir: str | None = None
    fields: list[str] = field(default_factory=lambda: list(DEDUP_FIELDS))
    threshold: float = 0.7
    num_perm: int = 128
    ngram_size: int = 3
    seed: int = 1

    def filter_frame(self, df: pd.DataFrame) -> None:
        from nemo_taskseed.filter.dedup import NearDuplicateIndex

        index = NearDuplicateIndex(self.threshold, self.num_perm, self.ngram_size, self.seed)
        index.add_seeds(
            (str(s.get("id", "")), " ".join(record_fields_text(s, self.fields))) for s in _load_seeds(self.seeds_dir)
        )
        rows, members = kept_items(df)
        items = [
            (df.at[i, "id"], df.at[i, "seed_id"], " ".join(record_fields_text(json.loads(df.at[i, "record"]), self.fields)))
            for i in rows
        ]
        for m in index.find(items):
            detail: dict[str, Any] = {"match_id": m.match_id, "jaccard": m.jaccard, "threshold": self.threshold}
            if m.reason == "near_copy_of_seed":
                detail["own_seed"] = m.match_id == df.at[rows[m.position], "seed_id"]
            for idx in members[rows[m.position]]:
                reject(df, idx, self.name, m.reason, detail)


@dataclass
class DecontaminationStage(_FilterStage):
    """Drop records sharing a word n-gram with a scored benchmark split; check the seeds too."""

    name: str = "decontam"
    benchmarks: list[dict[str, Any]] = field(default_factory=list)
    source: str = "auto"
    mirror: str | None = None
    include_paths: list[str] = field(default_factory=list)
    ngram_size: int = 13
    short_min_words: int = 8
    fields: list[str] = field(default_factory=lambda: list(DECONTAM_FIELDS))
    seed_fields: list[str] = field(default_factory=lambda: list(SEED_DECONTAM_FIELDS))
    seeds_dir: str | None = None
    drop_children_of_contaminated_seeds: bool = True

    def setup(self, worker_metadata=None) -> None:
        from nemo_taskseed.filter.decontam import build_index

        self._decontam = build_index(
            self.benchmarks, source=self.source, mirror=self.mirror, ngram_size=self.ngram_size,
            short_min_words=self.short_min_words, include_paths=self.include_paths,
        )
        self._seed_hits: list[dict[str, Any]] = []

    @staticmethod
    def _hit_detail(hit) -> dict[str, Any]:
        return {"benchmark": hit.row.benchmark, "split": hit.row.split, "row": hit.row.row,
                "ngram": hit.ngram, "n_matching_ngrams": hit.n_matches}

    def filter_frame(self, df: pd.DataFrame) -> None:
        if not hasattr(self, "_decontam"):
            self.setup()
        index = self._decontam.index
        self._seed_hits = []
        for seed in _load_seeds(self.seeds_dir):
            hit = index.check(record_fields_text(seed, self.seed_fields))
            if hit is not None:
                self._seed_hits.append({"seed_id": seed.get("id"), "family": seed.get("family"),
                                        "task": seed.get("task"), **self._hit_detail(hit)})
        dirty_seeds = {h["seed_id"]: h for h in self._seed_hits}
        for idx in df.index[kept_mask(df)]:
            record = json.loads(df.at[idx, "record"])
            hit = index.check(record_fields_text(record, self.fields))
            if hit is not None:
                reject(df, idx, self.name, "benchmark_overlap", self._hit_detail(hit))
            elif self.drop_children_of_contaminated_seeds and df.at[idx, "seed_id"] in dirty_seeds:
                seed_hit = dirty_seeds[df.at[idx, "seed_id"]]
                reject(df, idx, self.name, "seed_contaminated",
                       {k: seed_hit[k] for k in ("seed_id", "benchmark", "split", "row", "ngram")})

    def extra_stats(self) -> dict[str, Any]:
        return {
            "index_ngrams": len(self._decontam.index),
            "index_short_strings": self._decontam.index.n_short,
            "coverage": [c.to_dict() for c in self._decontam.coverage],
            "contaminated_seeds": self._seed_hits,
        }


@dataclass
class VerificationStage(_FilterStage):
    """Majority vote (multiple choice, math, short answer) and sandboxed tests (code).

    `backend`: an object with the `chat` interface; if None, `build_backend(backend_config)` is
    called in `setup()` (on the worker) and closed in `teardown()`.
    """

    name: str = "verify"
    vote: dict[str, Any] = field(default_factory=dict)
    code: dict[str, Any] = field(default_factory=dict)
    families: dict[str, str] = field(default_factory=dict)
    backend_config: dict[str, Any] | None = None
    backend: Any = None
    keep_outputs: bool = False

    def setup(self, worker_metadata=None) -> None:
        self._owns_backend = False

    def _backend(self):
        if self.backend is None:
            from nemo_taskseed.generate.backends import build_backend

            self.backend = build_backend(self.backend_config or {})
            self._owns_backend = True
        return self.backend

    def teardown(self) -> None:
        if getattr(self, "_owns_backend", False) and self.backend is not None:
            self.backend.close()
            self.backend = None

    def filter_frame(self, df: pd.DataFrame) -> None:
        from nemo_taskseed.filter.verify import VoteSettings, run_code_tests, vote_generative, vote_multiple_choice
        from nemo_taskseed.registry import verifier_kind

        settings = VoteSettings.from_config(self.vote)
        # One check per item (the representative row); all its variants share the verdict.
        reps, members = kept_items(df)
        groups: dict[str, list[Any]] = {}
        for idx in reps:
            kind = verifier_kind(df.at[idx, "family"], df.at[idx, "format"], self.families)
            groups.setdefault(kind, []).append(idx)

        def settle(rep: Any, info: dict[str, Any], reason: str | None) -> None:
            for idx in members[rep]:
                annotate(df, idx, "verification", info)
                if reason:
                    reject(df, idx, self.name, reason, info)

        for rep in groups.pop("code", []):
            rec = json.loads(df.at[rep, "record"])
            code, tests = rec.get("reference"), rec.get("tests") or []
            if not code or not tests:
                settle(rep, {"method": "code_tests", "status": "missing"}, "code_missing_solution_or_tests")
                continue
            res = run_code_tests(code, tests, timeout_s=float(self.code.get("timeout_s", 10)),
                                 memory_mb=int(self.code.get("memory_mb", 512)))
            settle(rep, {"method": "code_tests", **res.to_dict()}, None if res.passed else f"code_{res.status}")

        for kind, idxs in groups.items():
            records = [json.loads(df.at[i, "record"]) for i in idxs]
            if kind == "multiple_choice":
                results = vote_multiple_choice(self._backend(), records, settings)
            else:
                results = vote_generative(self._backend(), records, kind, settings)
            for rep, res in zip(idxs, results):
                info = res.to_dict(keep_outputs=self.keep_outputs)
                if res.target is None:
                    settle(rep, info, f"{kind}_no_reference_answer")
                else:
                    settle(rep, info, None if res.passed else f"{kind}_vote_disagrees")
