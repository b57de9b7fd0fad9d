"""The paraphrase-aware decontamination check as a filter stage (retrieve, then decide; see
`semantic/check.py`), which also embeds every kept item once for semantic dedup and the diversity
metrics (`semantic/dedup.py`, `semantic/diversity.py`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import DocumentBatch

from nemo_taskseed.filter.checks import CheckContext, FilterStage, register_check
from nemo_taskseed.filter.records import annotate, kept_items, parsed_records, reject
from nemo_taskseed.filter.semantic.check import SemanticSettings
from nemo_taskseed.llm.backends import build_backend


@functools.lru_cache(maxsize=2)
def load_semantic_index(prefix: str, mtime_ns: int):
    """The benchmark embedding index the driver built once (`<work>/semantic_index.faiss/.json`),
    loaded once per worker process (keyed by mtime, so a rebuilt index is reloaded)."""
    from nemo_taskseed.filter.semantic import SemanticIndex

    return SemanticIndex.load(Path(prefix))


@dataclass
class SemanticDecontaminationStage(FilterStage):
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


@register_check(
    "semantic_decontam",
    phase="screen",
    order=60,
    section="decontam.semantic",
    report_column="decontaminated",
    enabled=lambda s: s.semantic_decontam_on,
    # Also when only semantic dedup or the diversity metrics are on: the stage embeds each kept
    # item once and saves the vectors for both.
    needed=lambda s: s.needs_embeddings,
)
def semantic_decontamination_stage(ctx: CheckContext) -> SemanticDecontaminationStage:
    return SemanticDecontaminationStage(
        index_prefix=ctx.semantic_index or "",
        settings=ctx.settings.embedding_settings,
        save_dir=str(ctx.work / "semantic") if ctx.settings.needs_embeddings else "",
        cache_dir=str(ctx.work.parent / "cache"),  # the filter folder's, beside verify's
    )
