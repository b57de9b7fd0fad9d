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
        console.print_json(json.dumps(summary, default=str))
    (workdir / "run_summary.json").write_text(json.dumps({"config": to_container(cfg), "steps": summaries}, indent=2, default=str))
    console.rule("[bold]done")
    console.print(f"outputs under {workdir}; summary in {workdir / 'run_summary.json'}")
    return summaries
