"""The n-gram decontamination check as a filter stage: records sharing a word n-gram with a
scored benchmark split are dropped (`decontam:benchmark_overlap`); seeds that do are listed (the
resolve phase drops their children as `decontam:seed_contaminated`)."""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from nemo_curator.tasks import DocumentBatch

from nemo_taskseed.filter.checks import CheckContext, FilterStage, register_check
from nemo_taskseed.filter.records import kept_mask, parsed_records, reject
from nemo_taskseed.filter.text import record_fields_text

DECONTAM_FIELDS = ["context", "question", "options", "answer_text", "reference", "tests", "enrichment", "text"]
SEED_DECONTAM_FIELDS = ["context", "question", "options", "answer_text", "references"]


@functools.lru_cache(maxsize=2)
def load_decontam_index(path: str, mtime_ns: int):
    """The benchmark n-gram index the driver built once and pickled beside the work files; each
    worker process loads it once (keyed by mtime, so a rebuilt index is reloaded)."""
    with open(path, "rb") as handle:
        return pickle.load(handle)


@dataclass
class DecontaminationStage(FilterStage):
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


def _warnings(settings, facts: dict[str, Any]) -> list[str]:
    """Decontamination's warnings (semantic included: it is a part of `filter.decontam`)."""
    if not settings.decontam_on:
        return ["decontamination is off (filter.decontam.enabled=false)"]
    from nemo_taskseed.filter.settings import decontam_benchmarks

    warnings, contamination = [], facts.get("contamination") or {}
    if not settings.semantic_decontam_on:
        warnings.append(
            "semantic decontamination is off (filter.decontam.semantic.enabled=false): "
            "paraphrased benchmark items are only caught when they share a 13-gram"
        )
    elif contamination.get("semantic", {}).get("index_rows") == 0:
        warnings.append("semantic decontamination ran on an empty index: no benchmark row was embedded")
    checked = {str(b["name"]) for b in decontam_benchmarks(settings.raw["decontam"])}
    left_out = [name for name in settings.default_benchmarks if name not in checked]
    if left_out:
        # A list given in a config file or on the command line replaces the defaults (OmegaConf
        # merges lists by replacing them): say which ones are no longer checked.
        warnings.append(
            f"decontamination does not check {len(left_out)} of the default benchmarks "
            f"({', '.join(left_out)}): filter.decontam.benchmarks was replaced; add benchmarks "
            "with filter.decontam.extra_benchmarks to keep the defaults"
        )
    coverage = contamination.get("coverage") or []
    loaded = sum(1 for c in coverage if c.get("loaded"))
    if loaded < len(coverage):
        warnings.append(
            f"decontamination indexed {loaded} of {len(coverage)} scored benchmark splits "
            "(the rest could not be loaded: see contamination_report.json missing_splits)"
        )
    return warnings


@register_check(
    "decontam",
    phase="screen",
    order=50,
    section="decontam",
    report_column="decontaminated",
    enabled=lambda s: s.decontam_on,
    warnings=_warnings,
)
def decontamination_stage(ctx: CheckContext) -> DecontaminationStage:
    dc = ctx.settings.raw["decontam"]
    return DecontaminationStage(
        index_path=ctx.decontam_index, fields=list(dc["fields"]), seed_fields=list(dc["seed_fields"])
    )
