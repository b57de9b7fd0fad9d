"""The leak guard: a split may seed only if no lm-eval task scores on it.

"Scored" means named as some task's `validation_split` or `test_split` on the same dataset and
config. Few-shot splits are not scored: arc and gsm8k draw few-shot examples from `train`, and
treating that as evaluation data would wrongly drop them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class DatasetKey(NamedTuple):
    dataset_path: str
    dataset_name: str | None
    # Tasks on generic loaders (`json`, `csv`, `parquet`) differ only by their data files.
    data_files: str | None

    @classmethod
    def from_task_config(cls, cfg: dict[str, Any]) -> DatasetKey:
        kwargs = cfg.get("dataset_kwargs") or {}
        files = kwargs.get("data_files") if isinstance(kwargs, dict) else None
        return cls(
            str(cfg.get("dataset_path")),
            cfg.get("dataset_name"),
            json.dumps(files, sort_keys=True) if files else None,
        )


@dataclass
class ScoredSplits:
    """dataset key -> split -> the tasks (and roles) that score on it."""

    by_dataset: dict[DatasetKey, dict[str, list[str]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))

    def add_task(self, task: str, cfg: dict[str, Any]) -> None:
        if not cfg.get("dataset_path"):
            return
        key = DatasetKey.from_task_config(cfg)
        for role in ("validation_split", "test_split"):
            split = cfg.get(role)
            if split:
                self.by_dataset[key][str(split)].append(f"{task}:{role}")

    def scorers(self, key: DatasetKey, split: str) -> list[str]:
        return list(self.by_dataset.get(key, {}).get(split, []))


class SeedSplit(NamedTuple):
    split: str | None
    role: str  # override | training_split | fewshot_split | none
    reason: str


def choose_seed_split(task: str, cfg: dict[str, Any], scored: ScoredSplits, overrides: dict[str, str]) -> SeedSplit:
    """The split `task` may seed from, or `split=None` with the reason it may not."""
    key = DatasetKey.from_task_config(cfg)
    if task in overrides:
        split, role = str(overrides[task]), "override"
    elif cfg.get("training_split"):
        split, role = str(cfg["training_split"]), "training_split"
    elif cfg.get("fewshot_split"):
        split, role = str(cfg["fewshot_split"]), "fewshot_split"
    else:
        return SeedSplit(None, "none", "no training split, no few-shot split, no override")
    scorers = scored.scorers(key, split)
    if scorers:
        shown = ", ".join(scorers[:5]) + (f" (+{len(scorers) - 5} more)" if len(scorers) > 5 else "")
        return SeedSplit(None, role, f"leak: {role} '{split}' is scored by {shown}")
    why = {
        "override": f"config override names unscored split '{split}'",
        "training_split": f"declared training_split '{split}', scored by no task",
        "fewshot_split": f"no training_split; few-shot split '{split}' is scored by no task",
    }[role]
    return SeedSplit(split, role, why)
