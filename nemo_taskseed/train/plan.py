"""Read the blend plan written by `taskseed blend plan` (`plan.json`): the contract between data and training.

Only the fields training needs are checked here: `seq_length`, `total_tokens` and `data_paths`
(`[[weight, prefix], ...]`, Megatron `.bin/.idx` prefixes without the suffix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from nemo_taskseed.errors import UserError
from nemo_taskseed.schema.plan import PlanError, read_plan

__all__ = ["BlendPlan", "PlanError", "load_plan", "train_iters_for"]


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
    plan, plan_path = read_plan(path, written_by_blend=False)
    tokenizer = plan.get("tokenizer")
    tokenizer_path = tokenizer.get("path") if isinstance(tokenizer, dict) else tokenizer
    return BlendPlan(
        plan_path,
        plan["seq_length"],
        plan["total_tokens"],
        tuple((float(w), prefix) for w, prefix in plan["data_paths"]),
        list(plan.get("entries", [])),
        str(tokenizer_path) if tokenizer_path else None,
    )


def train_iters_for(total_tokens: int, global_batch_size: int, seq_length: int) -> int:
    """Optimizer steps that consume the token budget: ceil(tokens / (GBS x seq_length))."""
    if global_batch_size <= 0 or seq_length <= 0:
        raise UserError(f"global_batch_size and seq_length must be positive, got {global_batch_size}, {seq_length}")
    return math.ceil(total_tokens / (global_batch_size * seq_length))
