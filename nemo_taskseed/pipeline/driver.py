"""The shard driver every step runs its per-shard work through: plan, skip the done, run, collect.

A step describes its shards (name, what each is made from, the files it must leave, the Curator
task that makes it) and the stages that make one; `run_shards` does the rest the same way for
every step:

    plan     the shards the input asks for now; files and markers of shards no longer planned
             are removed (the folder never mixes two plans)
    skip     a shard whose marker (pipeline/shards.py) matches its fingerprint and whose outputs
             all exist is finished: it is not run again (this is the only resume there is). A step
             whose outputs only the marker can name (tokenize: the prefixes its records fell into)
             also checks them with `verify(marker)`; `resume=False` runs every planned shard
    run      the rest as one Curator `Pipeline` on the step's executor (inline, Ray Data, Xenna),
             whose last stage writes each shard's outputs and then its marker
    collect  every planned shard's marker with its fingerprint; a shard without one after the run
             is an error (`require_markers=False`: a step that reports such shards as incomplete)

A step with work between its per-shard passes (the filter's global dedup) runs them as named
`Phase`s of one `run_phases` call, as Curator's `CompositeStage.decompose` turns one stage a user
sees into several that run: each phase is timed and logged under its name.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_taskseed.pipeline import shards

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """One unit of work: `task` (re)makes it; it is done when its marker carries `fingerprint`
    and every path of `outputs` exists. `task` may be a function of no arguments that returns the
    task: it is then built only if the shard runs (a finished shard of a large step costs nothing)."""

    name: str
    fingerprint: str
    task: Any
    outputs: tuple[Path, ...] = ()


@dataclass
class ShardRun:
    """What `run_shards` did: the planned shards in order, those it ran, those whose files it
    removed (no longer planned), and every planned shard's marker after the run."""

    planned: list[str]
    ran: set[str]
    markers: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)


def is_finished(step_dir: str | Path, shard: Shard, verify: Callable[[dict[str, Any]], bool] | None = None) -> bool:
    """Its marker carries its fingerprint, its outputs exist, and `verify(marker)` (if given) agrees."""
    if not shards.is_done(step_dir, shard.name, shard.fingerprint, shard.outputs):
        return False
    if verify is None:
        return True
    marker = shards.read_marker(step_dir, shard.name)
    return marker is not None and bool(verify(marker))


def pending(
    step_dir: str | Path, planned: Iterable[Shard], verify: Callable[[dict[str, Any]], bool] | None = None
) -> list[Shard]:
    """The planned shards that are not finished (no marker, another fingerprint, an output missing,
    or `verify(marker)` false)."""
    return [s for s in planned if not is_finished(step_dir, s, verify)]


def run_pipeline(stages: list, tasks: list, executor: Any, *, label: str | None, name: str) -> None:
    """`tasks` through the Curator `Pipeline` of `stages` on `executor`, a name (`make_executor`;
    `label` titles the inline executor's progress bar, None: no bar) or an executor object.
    Nothing to run: no pipeline."""
    if not tasks:
        return
    from nemo_curator.pipeline import Pipeline

    from nemo_taskseed.pipeline.executors import make_executor

    if isinstance(executor, str):
        executor = make_executor(executor, progress=label)
    Pipeline(name=name, stages=stages).run(executor, initial_tasks=tasks)


def remove_unplanned_dirs(step_dir: str | Path, planned: set[str], dirs: tuple[str, ...]) -> list[str]:
    """Delete the `<folder>/<shard>/` sub-folders of shards no longer planned (hidden ones, a
    running shard's partial output, are the step's own); returns those shards' names."""
    removed = []
    for folder in dirs:
        root = Path(step_dir) / folder
        if not root.is_dir():
            continue
        for item in root.iterdir():
            if item.is_dir() and not item.name.startswith(".") and item.name not in planned:
                shutil.rmtree(item, ignore_errors=True)
                removed.append(item.name)
    return removed


def run_shards(
    step_dir: str | Path,
    planned: Sequence[Shard],
    stages: list | Callable[[list[Shard]], list],
    executor: Any,
    *,
    label: str | None,
    name: str,
    kinds: tuple[str, ...] = (),
    extra: tuple[tuple[str, str], ...] = (),
    dirs: tuple[str, ...] = (),
    require_markers: bool = True,
    verify: Callable[[dict[str, Any]], bool] | None = None,
    resume: bool = True,
) -> ShardRun:
    """Plan, skip, run, collect (module docstring). `stages` may be a function of the pending
    shards (built only when something runs: a step need not load a model to find all shards done).
    `executor`: a name or an executor object (`run_pipeline`).
    `kinds`, `extra` and `dirs` name the per-shard files (`<kind>/part-<shard>.*`,
    `<folder>/<shard><suffix>`) and folders (`<folder>/<shard>/`) removed with the markers of
    shards no longer planned. `verify(marker)`: the step's own check of a marker's outputs;
    `resume=False`: every planned shard runs, finished or not."""
    names = [s.name for s in planned]
    if len(set(names)) != len(names):
        raise ValueError(f"{step_dir}: two planned shards share a name")
    todo = pending(step_dir, planned, verify) if resume else list(planned)
    removed = shards.remove_unplanned(step_dir, set(names), kinds, extra)
    removed = sorted({*removed, *remove_unplanned_dirs(step_dir, set(names), dirs)})
    if todo:
        built = stages(todo) if callable(stages) else stages
        tasks = [s.task() if callable(s.task) else s.task for s in todo]
        run_pipeline(built, tasks, executor, label=label, name=name)
    fingerprints = {s.name: s.fingerprint for s in planned}
    markers = {
        s: m if m is not None and m.get("fingerprint") == fingerprints[s] else None
        for s, m in shards.read_markers(step_dir, names).items()
    }
    missing = [s for s, m in markers.items() if m is None]
    if missing and require_markers:
        raise RuntimeError(f"{len(missing)} shard(s) of {step_dir} have no done marker after the run: {missing[:5]}")
    return ShardRun(
        planned=names, ran={s.name for s in todo}, markers={s: m for s, m in markers.items() if m}, removed=removed
    )


@dataclass(frozen=True)
class Phase:
    """A named part of a step: `run(state)` reads and extends the step's state dict."""

    name: str
    run: Callable[[dict[str, Any]], None]


def run_phases(step: str, phases: Sequence[Phase], state: dict[str, Any]) -> dict[str, Any]:
    """Run `phases` in order over one state; each phase's seconds land in `state['phase_seconds']`."""
    seconds = state.setdefault("phase_seconds", {})
    for phase in phases:
        started = time.monotonic()
        log.info("%s: phase %s", step, phase.name)
        phase.run(state)
        seconds[phase.name] = round(time.monotonic() - started, 3)
    return state
