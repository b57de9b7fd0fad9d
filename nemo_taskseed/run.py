"""`taskseed run`: the configured steps in order, each reading the previous step's folder.

Steps are registered by import path so each stage lands in its own package; every step exposes
`run_step(cfg, in_dir, out_dir) -> summary dict`.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nemo_taskseed.config import to_container
from nemo_taskseed.errors import UserError

STEPS = {
    "catalog": "nemo_taskseed.catalog.step",
    "seeds": "nemo_taskseed.seeds.step",
    "generate": "nemo_taskseed.generate.step",
    "filter": "nemo_taskseed.filter.step",
    "tokenize": "nemo_taskseed.tokenize.step",
    "blend": "nemo_taskseed.blend.step",
}
# Steps that consume another step's output name it here; the rest read nothing.
STEP_INPUT = {"generate": "seeds", "filter": "generate", "tokenize": "filter", "blend": "tokenize"}


def run_pipeline(cfg, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    workdir = Path(cfg.run.workdir)
    steps = list(cfg.run.steps)
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise UserError(f"run.steps: unknown step(s) {unknown}; known: {list(STEPS)}")
    if cfg.run.get("demo_mirror") and not cfg.seeds.get("mirror"):
        from nemo_taskseed.demo import write_demo_mirror

        cfg.seeds.mirror = str(write_demo_mirror(workdir / "demo_mirror"))
        console.print(f"[bold]demo mirror[/bold] -> {cfg.seeds.mirror}")
        if not cfg.filter.decontam.get("mirror"):
            # The mirror also holds the demo benchmarks' scored splits: decontamination indexes those.
            cfg.filter.decontam.mirror = cfg.seeds.mirror
    summaries: dict[str, Any] = {}
    for step in steps:
        module = importlib.import_module(STEPS[step])
        producer = STEP_INPUT.get(step)
        if producer == "filter" and "filter" not in steps:
            producer = "generate"  # tokenize straight after generation when filtering is off
        in_dir = workdir / producer if producer else None
        if in_dir is not None and not in_dir.is_dir():
            raise UserError(f"step {step!r} reads {in_dir}, which does not exist: run step {producer!r} first")
        out_dir = workdir / step
        out_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        console.rule(f"[bold]{step}")
        summary = module.run_step(cfg, in_dir, out_dir)
        summary["seconds"] = round(time.perf_counter() - start, 2)
        summaries[step] = summary
        console.print(_step_line(step, summary))
    (workdir / "run_summary.json").write_text(
        json.dumps({"config": to_container(cfg), "steps": summaries}, indent=2, default=str)
    )
    console.rule("[bold]done")
    console.print(summary_table(summaries))
    for step, summary in summaries.items():
        for warning in summary.get("warnings") or []:
            console.print(f"[bold yellow]WARNING[/] {step}: {warning}", soft_wrap=True)
    # soft_wrap: paths are copied from here; a wrapped path cannot be pasted back.
    console.print(f"outputs under {workdir}; every count in {workdir / 'run_summary.json'}", soft_wrap=True)
    return summaries


def _counts(step: str, summary: dict[str, Any]) -> tuple[Any, Any, Any, str]:
    """(in, kept, dropped, what else matters) of one step's summary, whatever its shape."""
    dropped = summary.get("rejected", summary.get("dropped"))
    if isinstance(dropped, dict):
        dropped = sum(v for v in dropped.values() if isinstance(v, int))
    notes = {
        "catalog": lambda s: (
            f"{s.get('eligible_subtasks', '?')} subtasks in {s.get('eligible_families', '?')} families eligible"
        ),
        "tokenize": lambda s: f"{s.get('tokens', 0):,} tokens in {s.get('prefixes', 0)} datasets",
        "blend": lambda s: f"{s.get('total_tokens', 0):,} tokens planned over {s.get('datasets', 0)} datasets",
    }.get(step, lambda s: "")(summary)
    kept = summary.get("kept", summary.get("documents"))
    n_in = summary.get("in", "")
    if step == "generate":  # seeds in, candidate items -> kept items (each written as several variants)
        n_in, kept = summary.get("seeds", ""), summary.get("items_kept")
        notes = f"{summary.get('records_kept', 0)} records over the variants"
    return n_in, kept, dropped, notes


def _step_line(step: str, summary: dict[str, Any]) -> str:
    _, kept, dropped, notes = _counts(step, summary)
    parts = [f"[bold]{step}[/] done in {summary.get('seconds', 0):.0f} s"]
    if kept is not None:
        parts.append(f"kept {kept}")
    if dropped not in (None, ""):
        parts.append(f"dropped {dropped}")
    reasons = summary.get("rejected_by_reason") or (
        summary["dropped"] if isinstance(summary.get("dropped"), dict) else None
    )
    if isinstance(reasons, dict) and reasons:
        top = sorted(reasons.items(), key=lambda kv: -kv[1] if isinstance(kv[1], int) else 0)[:3]
        notes = ", ".join(filter(None, [notes, "top reasons: " + ", ".join(f"{r} {n}" for r, n in top)]))
    if notes:
        parts.append(notes)
    return ": ".join(parts[:1]) + (": " + ", ".join(parts[1:]) if parts[1:] else "")


def summary_table(summaries: dict[str, dict[str, Any]]) -> Table:
    """One row per step: what went in, what was kept and dropped, how long it took."""
    table = Table(title="taskseed run", title_justify="left")
    for column in ("step", "in", "kept", "dropped", "seconds", ""):
        table.add_column(column, justify="right" if column in ("in", "kept", "dropped", "seconds") else "left")
    for step, summary in summaries.items():
        n_in, kept, dropped, notes = _counts(step, summary)
        table.add_row(
            step,
            *("" if v is None else f"{v:,}" if isinstance(v, int) else str(v) for v in (n_in, kept, dropped)),
            f"{summary.get('seconds', 0):.0f}",
            notes,
        )
    return table
