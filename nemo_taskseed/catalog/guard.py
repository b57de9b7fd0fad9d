"""The leak guard: a split may seed only if no lm-eval task scores on it.

Two rules (`catalog.leak_rule`):
  scored        a split is evaluation data when some task on the same dataset and config scores it.
                lm-eval scores a task's `test_split` when it declares one, else its `validation_split`
                (`Task.eval_docs`): a validation split declared next to a test split is not scored.
  conservative  (default) also any split a task declares as `validation_split`, scored or not:
                validation splits are what papers tune and often report on.
`excluded.jsonl` says which applies: `leak` (scored by a task) or `declared_eval_split` (only the
conservative rule excludes it). Few-shot splits are never evaluation data: arc and gsm8k draw
few-shot examples from `train`, and treating that as evaluation data would wrongly drop them.
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

    by_dataset: dict[DatasetKey, dict[str, list[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )

    def add_task(self, task: str, cfg: dict[str, Any]) -> None:
        if not cfg.get("dataset_path"):
            return
        key = DatasetKey.from_task_config(cfg)
        for role in ("validation_split", "test_split"):
            split = cfg.get(role)
            if split:
                # lm-eval evaluates test_split when declared, else validation_split.
                scored = role == "test_split" or not cfg.get("test_split")
                self.by_dataset[key][str(split)].append(f"{task}:{role}" + ("" if scored else DECLARED_ONLY))

    def scorers(self, key: DatasetKey, split: str) -> list[str]:
        """Every task declaring `split` as an evaluation split (scored or not)."""
        return list(self.by_dataset.get(key, {}).get(split, []))

    def scored_by(self, key: DatasetKey, split: str) -> tuple[list[str], list[str]]:
        """(tasks that score `split`, tasks that only declare it as a validation split next to a test split)."""
        everyone = self.scorers(key, split)
        return (
            [s for s in everyone if not s.endswith(DECLARED_ONLY)],
            [s[: -len(DECLARED_ONLY)] for s in everyone if s.endswith(DECLARED_ONLY)],
        )


DECLARED_ONLY = " (declared, not scored)"
LEAK_RULES = ("conservative", "scored")


class SeedSplit(NamedTuple):
    split: str | None
    role: str  # override | training_split | fewshot_split | none
    reason: str
    # Why it may not seed: leak | declared_eval_split | no_seed_split ("" when it may).
    code: str = ""


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")


def choose_seed_split(
    task: str, cfg: dict[str, Any], scored: ScoredSplits, overrides: dict[str, str], leak_rule: str = "conservative"
) -> SeedSplit:
    """The split `task` may seed from, or `split=None` with the reason (and its code) it may not."""
    key = DatasetKey.from_task_config(cfg)
    if task in overrides:
        split, role = str(overrides[task]), "override"
    elif cfg.get("training_split"):
        split, role = str(cfg["training_split"]), "training_split"
    elif cfg.get("fewshot_split"):
        split, role = str(cfg["fewshot_split"]), "fewshot_split"
    else:
        return SeedSplit(None, "none", "no training split, no few-shot split, no override", "no_seed_split")
    if leak_rule not in LEAK_RULES:
        raise ValueError(f"leak_rule must be one of {LEAK_RULES}, got {leak_rule!r}")
    scoring, declaring = scored.scored_by(key, split)
    if scoring:
        return SeedSplit(None, role, f"leak: {role} '{split}' is scored by {_shown(scoring)}", "leak")
    if declaring and leak_rule == "conservative":
        return SeedSplit(
            None,
            role,
            (
                f"declared evaluation split (catalog.leak_rule=conservative): {role} '{split}' is the "
                f"validation_split of {_shown(declaring)}, which lm-eval does not score (it scores their "
                f"test_split); leak_rule=scored would seed it"
            ),
            "declared_eval_split",
        )
    why = {
        "override": f"config override names unscored split '{split}'",
        "training_split": f"declared training_split '{split}', scored by no task",
        "fewshot_split": f"no training_split; few-shot split '{split}' is scored by no task",
    }[role]
    if declaring:
        why += f" (validation_split of {_shown(declaring)}, unscored next to their test_split; leak_rule=scored)"
    return SeedSplit(split, role, why)
