"""Curator's GPU dedup workflows, selected by `filter.dedup.backend: gpu` (needs cudf and a GPU).

Not run on CPU machines (every Curator dedup workflow imports cudf). They identify duplicates by
the `text` field of JSONL files: `write_dedup_input` writes `{id, text}` with our normalized item
text, so GPU and CPU paths compare the same strings; `removal_ids` reads back the ids the workflow
marks as duplicates, and the filter step rejects those rows with reason `gpu_exact_duplicate` /
`gpu_fuzzy_duplicate`. Dedup against seeds works the same way: seeds are written into the input
too, and a generated record in a duplicate group with a seed is dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.text import normalize_text, record_fields_text


def write_dedup_input(path: Path, items: list[tuple[str, dict[str, Any]]], fields: list[str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    out = path / "items.jsonl"
    with open(out, "w", encoding="utf-8") as fh:
        for item_id, record in items:
            fh.write(
                json.dumps({"id": item_id, "text": normalize_text(" ".join(record_fields_text(record, fields)))}) + "\n"
            )
    return out


def exact_workflow(input_path: Path, output_path: Path):
    try:
        from nemo_curator.stages.deduplication.exact.workflow import ExactDeduplicationWorkflow
    except ImportError as exc:  # pragma: no cover - CPU machines
        raise UserError(f"filter.dedup.backend=gpu needs Curator's GPU extras (cudf): {exc}") from exc
    return ExactDeduplicationWorkflow(
        input_path=str(input_path),
        output_path=str(output_path),
        input_filetype="jsonl",
        text_field="text",
        id_field="id",
        assign_id=False,
        perform_removal=False,
    )


def fuzzy_workflow(input_path: Path, output_path: Path, cache_path: Path, gpu_cfg: dict[str, Any]):
    try:
        from nemo_curator.stages.deduplication.fuzzy.workflow import FuzzyDeduplicationWorkflow
    except ImportError as exc:  # pragma: no cover - CPU machines
        raise UserError(f"filter.dedup.backend=gpu needs Curator's GPU extras (cudf): {exc}") from exc
    return FuzzyDeduplicationWorkflow(
        input_path=str(input_path),
        output_path=str(output_path),
        cache_path=str(cache_path),
        input_filetype="jsonl",
        text_field="text",
        perform_removal=False,
        char_ngrams=int(gpu_cfg["char_ngrams"]),  # configs/base/filter.yaml: filter.dedup.gpu
        num_bands=int(gpu_cfg["num_bands"]),
        minhashes_per_band=int(gpu_cfg["minhashes_per_band"]),
    )


def removal_ids(output_path: Path) -> set[str]:
    """Ids the workflows wrote as duplicates to remove (parquet files under output_path)."""
    import pandas as pd

    ids: set[str] = set()
    for f in Path(output_path).rglob("*.parquet"):
        frame = pd.read_parquet(f)
        col = "id" if "id" in frame.columns else frame.columns[0]
        ids.update(str(v) for v in frame[col])
    return ids
