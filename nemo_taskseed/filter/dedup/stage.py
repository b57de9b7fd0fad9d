"""Exact and fuzzy dedup as filter checks: per shard, the signatures of every kept item and seed
(`DedupSignatureStage`); once over all shards, the driver's resolve phase decides which copies go
(`dedup.sharded.resolve`, or Curator's GPU workflows with filter.dedup.backend=gpu)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from nemo_curator.tasks import DocumentBatch

from nemo_taskseed.filter.checks import CheckContext, FilterStage, is_seeds, register_check
from nemo_taskseed.filter.dedup.sharded import DedupSettings, signatures_for
from nemo_taskseed.filter.records import kept_items, parsed_records


@dataclass
class DedupSignatureStage(FilterStage):
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
        if is_seeds(task):
            items = [(s.get("id", ""), s.get("id", ""), s) for s in parsed_records(df)]
            self._save(task, items, seeds=True)
            return task
        reps, _ = kept_items(df)  # one entry per item: its variants repeat the same question on purpose
        records = parsed_records(df)
        items = [(df.at[i, "item_id"], df.at[i, "seed_id"], records[df.index.get_loc(i)]) for i in reps]
        self._save(task, items, seeds=False)
        return task


def _signatures(ctx: CheckContext) -> DedupSignatureStage:
    return DedupSignatureStage(settings=ctx.settings.dedup, work_dir=str(ctx.work))


def _warnings(settings, facts) -> list[str]:
    return [] if settings.dedup.exact or settings.dedup.fuzzy else ["dedup is off"]


# Both are decided in the resolve phase; their signatures are written in the screen phase when
# the cpu backend decides them (one stage for both).
for _name, _order, _enabled in (
    ("exact", 70, lambda s: s.dedup.exact),
    ("fuzzy", 80, lambda s: s.dedup.fuzzy),
):
    register_check(
        f"{_name}_dedup",
        phase="resolve",
        order=_order,
        section=f"dedup.{_name}",
        report_column="deduped",
        enabled=_enabled,
        needed=lambda s: s.cpu_dedup,
        warnings=_warnings,
    )(_signatures)
