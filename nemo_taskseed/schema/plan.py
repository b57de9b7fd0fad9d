"""The one reader of `plan.json`, the contract between data (`taskseed blend plan` writes it) and
training (`taskseed launch train`, the recipes, `taskseed blend verify` read it).

Fields every reader relies on: `seq_length`, `total_tokens` and `data_paths` (`[[weight, prefix],
...]`, Megatron `.bin/.idx` prefixes without the suffix). A plan `taskseed blend plan` wrote also
carries `schema` and weights that sum to 1; training accepts a hand-written plan without them
(Megatron normalizes weights).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.utils.jsonl import read_json_artifact

PLAN_SCHEMA = "taskseed.blend-plan/1"


class PlanError(UserError):
    """A blend that cannot be planned, or a plan.json that cannot be used; the message names the
    file and field, or the entry, family or group at fault."""


def read_plan(path: str | Path, *, written_by_blend: bool = True) -> tuple[dict[str, Any], Path]:
    """(the plan, its path); `path` may be the folder holding plan.json.

    `written_by_blend`: also require the schema tag and weights summing to 1, as `blend plan`
    writes them (what `blend verify` checks); training reads any well-formed plan.
    """
    plan, plan_path = read_json_artifact(
        path,
        what="blend plan",
        default_name="plan.json",
        hint="write one with `taskseed blend plan`",
        error=PlanError,
        schema=PLAN_SCHEMA if written_by_blend else None,
    )
    for key in ("seq_length", "total_tokens", "data_paths"):
        if key not in plan:
            raise PlanError(f"{plan_path}: missing field {key!r}")
    for key in ("seq_length", "total_tokens"):
        value = plan[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise PlanError(f"{plan_path}: {key} must be a positive integer, got {value!r}")
    if not isinstance(plan["data_paths"], list) or not plan["data_paths"]:
        raise PlanError(f"{plan_path}: data_paths is empty")
    for i, item in enumerate(plan["data_paths"]):
        if not (isinstance(item, (list, tuple)) and len(item) == 2):
            raise PlanError(f"{plan_path}: data_paths[{i}] must be [weight, prefix], got {item!r}")
        weight, prefix = item
        if not isinstance(weight, (int, float)) or weight <= 0 or not math.isfinite(weight):
            raise PlanError(f"{plan_path}: data_paths[{i}] weight must be a positive number, got {weight!r}")
        if not isinstance(prefix, str) or not prefix:
            raise PlanError(f"{plan_path}: data_paths[{i}] prefix must be a non-empty string")
        if prefix.endswith((".bin", ".idx")):
            raise PlanError(f"{plan_path}: data_paths[{i}] must be a prefix without .bin/.idx: {prefix}")
    if written_by_blend:
        total = sum(float(w) for w, _ in plan["data_paths"])
        if abs(total - 1.0) > 1e-6:
            raise PlanError(f"{plan_path}: data_paths weights sum to {total:.8g}, not 1 (was the plan edited by hand?)")
    return plan, plan_path
