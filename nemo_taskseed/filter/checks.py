"""The filter's checks, each declared once, and the base of the stages that run them.

A check is what rejects a record with a reason: its name is the `stage` written on every record it
drops. It is declared where it is implemented, with `@register_check` (in the style of lm-eval's
`lm_eval/api/registry.py`):

    @register_check("answer_form", phase="screen", order=35, section="quality.answer_form",
                    report_column="checked", enabled=lambda s: s.quality_on and s.section(...)["enabled"])
    def answer_form_stage(ctx: CheckContext) -> ProcessingStage: ...

and everything else is derived from the registry: the pipeline order of the checks (`stage_order`),
which checks a configuration runs (`checks_run`), the quality report's columns (`report_columns`),
what of the configuration a shard's verdicts depend on (`CheckContext.fingerprint_sections`), and the
summary's warnings for checks that are off (`Check.warnings`). Check modules are found by their
registration (`load_checks`): adding a check is its module, its YAML section under `filter`, its
test and a line in docs/filter.md.

Phases: `screen` checks run per shard before the global decisions, `resolve` checks are decided
once over every shard (dedup; `stage=None`, the driver's resolve phase decides them), `verify`
checks run per shard after them. Like datatrove's filters (`pipeline/filters/base_filter.py`), a
check never removes a row: it marks it dropped with its name, a reason and a detail, and the
rejected part keeps it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import DocumentBatch

from nemo_taskseed.filter.records import COLUMNS, kept_items, kept_mask, parsed_records, reject
from nemo_taskseed.pipeline import shards

if TYPE_CHECKING:
    from nemo_taskseed.filter.settings import FilterSettings

log = logging.getLogger(__name__)

PHASES = ("screen", "resolve", "verify")


@dataclass(frozen=True)
class CheckContext:
    """What a check's stage is built from: the step's settings (parsed once) and where the step
    keeps its files and shared indexes."""

    settings: FilterSettings
    work: Path  # <out>/work: phase-1 frames, dedup signatures, indexes
    out_dir: Path
    decontam_index: str | None = None  # the pickled n-gram index (decontam on)
    semantic_index: str | None = None  # the faiss index's path prefix (semantic decontamination on)
    backend: Any = None  # an injected verification backend (tests, notebooks)


@dataclass(frozen=True)
class Check:
    name: str
    phase: str
    order: int  # position in the pipeline (lower first); stage_order() sorts by it
    section: str  # its settings under `filter` (dotted), e.g. quality.explanation
    report_column: str  # the quality report column whose survivors it decides
    enabled: Callable[[FilterSettings], bool]
    # How it becomes a Curator stage (None: decided by the driver's resolve phase).
    stage: Callable[[CheckContext], ProcessingStage | None] | None = None
    # Warnings for the summary when the check is off or ran on nothing ((settings, facts) -> lines).
    warnings: Callable[[FilterSettings, dict[str, Any]], list[str]] | None = None
    # Run the stage even when the check is off (the semantic stage also embeds for dedup/diversity).
    needed: Callable[[FilterSettings], bool] | None = None
    # Its typed settings from its section (`filter.<section>`), parsed once at the step's boundary
    # (FilterSettings.check_settings); a bad value fails there, naming the key.
    settings: Callable[[dict[str, Any]], Any] | None = None

    def is_needed(self, settings: FilterSettings) -> bool:
        return bool(self.needed(settings) if self.needed is not None else self.enabled(settings))


_CHECKS: dict[str, Check] = {}
# Modules that declare checks are found by this text (a cheap scan, no import of the rest).
_MARK = "register_check("
_LOADED = False


def register_check(
    name: str,
    *,
    phase: str,
    order: int,
    section: str,
    report_column: str,
    enabled: Callable[[FilterSettings], bool],
    warnings: Callable[[FilterSettings, dict[str, Any]], list[str]] | None = None,
    needed: Callable[[FilterSettings], bool] | None = None,
    settings: Callable[[dict[str, Any]], Any] | None = None,
) -> Callable:
    """Declare a check; decorates the function that builds its Curator stage from a
    `CheckContext` (or `None` for a check the resolve phase decides)."""
    if phase not in PHASES:
        raise ValueError(f"check {name!r}: phase must be one of {PHASES}, got {phase!r}")

    def wrap(factory: Callable[[CheckContext], ProcessingStage | None] | None):
        if name in _CHECKS and _CHECKS[name].stage is not factory:
            raise ValueError(f"check {name!r} is registered twice")
        taken = {c.order: c.name for c in _CHECKS.values() if c.name != name}
        if order in taken:
            raise ValueError(f"check {name!r}: order {order} is taken by {taken[order]!r}")
        _CHECKS[name] = Check(name, phase, order, section, report_column, enabled, factory, warnings, needed, settings)
        return factory

    return wrap


def load_checks() -> None:
    """Import every module of `nemo_taskseed.filter` that registers a check (once)."""
    global _LOADED
    if _LOADED:
        return
    import nemo_taskseed.filter as package

    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        spec = importlib.util.find_spec(info.name)
        origin = getattr(spec, "origin", None)
        if origin and origin.endswith(".py") and _MARK in Path(origin).read_text(encoding="utf-8"):
            importlib.import_module(info.name)
    _LOADED = True


def all_checks() -> list[Check]:
    """Every registered check, in pipeline order."""
    load_checks()
    return sorted(_CHECKS.values(), key=lambda c: c.order)


def get_check(name: str) -> Check:
    load_checks()
    try:
        return _CHECKS[name]
    except KeyError:
        raise KeyError(f"Unknown check {name!r}. Available: {', '.join(c.name for c in all_checks())}") from None


def stage_order() -> tuple[str, ...]:
    """`read`, then every check in pipeline order: the order of the per-check counts and reports."""
    return ("read", *(c.name for c in all_checks()))


def checks_run(settings: FilterSettings) -> dict[str, bool]:
    """Which checks this configuration runs (check name -> on)."""
    return {c.name: bool(c.enabled(settings)) for c in all_checks()}


def report_columns() -> list[tuple[str, tuple[str, ...]]]:
    """The quality report's columns in pipeline order, each with the stages whose drops it counts
    (`read` counts with the first column: a line that is no record was never parsed)."""
    columns: dict[str, list[str]] = {}
    for check in all_checks():
        columns.setdefault(check.report_column, []).append(check.name)
    first = next(iter(columns))
    columns[first].insert(0, "read")
    return [(col, tuple(names)) for col, names in columns.items()]


def checks_in_column(column: str) -> tuple[str, ...]:
    return dict(report_columns()).get(column, ())


def check_stages(ctx: CheckContext, phases: tuple[str, ...]) -> list[ProcessingStage]:
    """The Curator stages of the checks of `phases` this configuration needs, in pipeline order (a stage
    two checks share, such as the dedup signatures, once)."""
    stages, names = [], set()
    for check in all_checks():
        if check.phase not in phases or check.stage is None or not check.is_needed(ctx.settings):
            continue
        stage = check.stage(ctx)
        if stage is not None and stage.name not in names:
            stages.append(stage)
            names.add(stage.name)
    return stages


def check_warnings(settings: FilterSettings, facts: dict[str, Any]) -> list[str]:
    """The checks' warnings, the answer check first (what most changes what the data means), then
    the others in pipeline order; a warning two checks share is said once."""
    ordered = sorted(all_checks(), key=lambda c: (c.phase != "verify", c.order))
    out: list[str] = []
    for check in ordered:
        for line in check.warnings(settings, facts) if check.warnings else []:
            if line not in out:
                out.append(line)
    return out


# --- the stages checks are built from -----------------------------------------------------------


def is_seeds(task: DocumentBatch) -> bool:
    return task._metadata.get("kind") == "seeds"


class FilterStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """A check over the kept rows of a generated shard (seed shards pass through): subclasses
    implement `filter_frame` and mark rows with `reject`."""

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
        if is_seeds(task):
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


class ItemCheckStage(FilterStage):
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
