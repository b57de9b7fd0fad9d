"""Read the blend plan written by `taskseed blend plan` (`plan.json`): the contract between data and training.

Only the fields training needs are checked here: `seq_length`, `total_tokens` and `data_paths`
(`[[weight, prefix], ...]`, Megatron `.bin/.idx` prefixes without the suffix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from nemo_taskseed.errors import UserError
from nemo_taskseed.utils.jsonl import read_json_artifact


class PlanError(UserError):
    """A plan.json that training cannot use; the message names the file and the field."""


@dataclass(frozen=True)
class BlendPlan:
    path: Path
    seq_length: int
    total_tokens: int
    # (weight, prefix) pairs in plan order; weights are relative, Megatron normalises them.
    data_paths: tuple[tuple[float, str], ...]
    entries: list = field(default_factory=list, compare=False)
    # The tokenizer the blend was tokenized with, as the tokenize manifest recorded it (if any).
    tokenizer_path: str | None = None

    @property
    def prefixes(self) -> list[str]:
        return [prefix for _, prefix in self.data_paths]

    @property
    def weights(self) -> list[float]:
        return [weight for weight, _ in self.data_paths]

    def flat_data_path(self) -> list[str]:
        """`["w1", "prefix1", "w2", "prefix2", ...]`: the form Megatron's `--data-path`, Bridge's
        `dataset.data_path` and NeMo 2's `PreTrainingDataModule(paths=...)` all accept."""
        flat: list[str] = []
        for weight, prefix in self.data_paths:
            flat += [repr(float(weight)), prefix]
        return flat


def load_plan(path: str | Path) -> BlendPlan:
    raw, plan_path = read_json_artifact(
        path, what="blend plan", default_name="plan.json", hint="write one with `taskseed blend plan`", error=PlanError
    )
    for key in ("seq_length", "total_tokens", "data_paths"):
        if key not in raw:
            raise PlanError(f"{plan_path}: missing field {key!r}")
    seq_length, total_tokens = raw["seq_length"], raw["total_tokens"]
    if not isinstance(seq_length, int) or seq_length <= 0:
        raise PlanError(f"{plan_path}: seq_length must be a positive integer, got {seq_length!r}")
    if not isinstance(total_tokens, int) or total_tokens <= 0:
        raise PlanError(f"{plan_path}: total_tokens must be a positive integer, got {total_tokens!r}")
    pairs = []
    for i, item in enumerate(raw["data_paths"]):
        if not (isinstance(item, (list, tuple)) and len(item) == 2):
            raise PlanError(f"{plan_path}: data_paths[{i}] must be [weight, prefix], got {item!r}")
        weight, prefix = item
        if not isinstance(weight, (int, float)) or weight <= 0 or not math.isfinite(weight):
            raise PlanError(f"{plan_path}: data_paths[{i}] weight must be a positive number, got {weight!r}")
        if not isinstance(prefix, str) or not prefix:
            raise PlanError(f"{plan_path}: data_paths[{i}] prefix must be a non-empty string")
        if prefix.endswith((".bin", ".idx")):
            raise PlanError(f"{plan_path}: data_paths[{i}] must be a prefix without .bin/.idx: {prefix}")
        pairs.append((float(weight), prefix))
    if not pairs:
        raise PlanError(f"{plan_path}: data_paths is empty")
    tokenizer = raw.get("tokenizer")
    tokenizer_path = tokenizer.get("path") if isinstance(tokenizer, dict) else tokenizer
    return BlendPlan(
        plan_path,
        seq_length,
        total_tokens,
        tuple(pairs),
        list(raw.get("entries", [])),
        str(tokenizer_path) if tokenizer_path else None,
    )


def train_iters_for(total_tokens: int, global_batch_size: int, seq_length: int) -> int:
    """Optimizer steps that consume the token budget: ceil(tokens / (GBS x seq_length))."""
    if global_batch_size <= 0 or seq_length <= 0:
        raise UserError(f"global_batch_size and seq_length must be positive, got {global_batch_size}, {seq_length}")
    return math.ceil(total_tokens / (global_batch_size * seq_length))
