"""`taskseed run` step: write the catalog (eligible and excluded subtasks) into the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nemo_taskseed.catalog.build import build_catalog
from nemo_taskseed.utils.jsonl import write_jsonl


def run_step(cfg, in_dir: Path | None, out_dir: Path) -> dict[str, Any]:
    result = build_catalog(cfg.catalog)
    write_jsonl(out_dir / "catalog.jsonl", result.eligible)
    write_jsonl(out_dir / "excluded.jsonl", result.excluded)
    return result.counts()
