"""`taskseed run` step: collect and normalize seeds for `seeds.tasks` from `seeds.mirror` (or the hub)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nemo_taskseed.catalog import load_catalog_rows
from nemo_taskseed.errors import UserError
from nemo_taskseed.seeds.pipeline import collect_seeds


def run_step(cfg, in_dir: Path | None, out_dir: Path) -> dict[str, Any]:
    tasks = list(OmegaConf.to_container(cfg.seeds.tasks))
    if not tasks:
        raise UserError("seeds.tasks is empty: name the subtasks to seed from")
    rows = load_catalog_rows(cfg.catalog, tasks, dedup_sources=bool(cfg.seeds.dedup_sources))
    summary = collect_seeds(rows, cfg.seeds, out_dir, executor_name=cfg.run.executor)
    return {
        k: summary[k]
        for k in ("kept", "rejected", "rejected_by_reason", "subtasks", "incomplete_subtasks", "resumed_subtasks")
    }
