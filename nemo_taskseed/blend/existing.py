"""The existing pretraining blend's part of the plan: its prefixes checked and counted, and each
dataset's share of the existing budget (from its weight, or from its tokens when none has one)."""

from __future__ import annotations

from nemo_taskseed.blend.settings import PlanSettings
from nemo_taskseed.blend.sources import ExistingEntry, count_prefix_tokens, prefix_exists
from nemo_taskseed.schema.plan import PlanError


def resolve_existing(existing: list[ExistingEntry], settings: PlanSettings) -> list[ExistingEntry]:
    """Check that every existing prefix is there (when required) and read token counts from .idx."""
    for entry in existing:
        if prefix_exists(entry.prefix):
            _, tokens = count_prefix_tokens(entry.prefix)
            if tokens == 0:
                raise PlanError(f"{entry.where}: zero-token dataset {entry.prefix}; remove it from the blend")
            entry.tokens = tokens if entry.tokens is None else entry.tokens
        elif settings.require_existing_prefixes:
            raise PlanError(
                f"{entry.where}: prefix {entry.prefix} does not exist ({entry.prefix}.bin/.idx not found); "
                f"fix the path, or set blend.require_existing_prefixes=false for paths that only exist on the cluster"
            )
    return existing


def existing_shares(existing: list[ExistingEntry], settings: PlanSettings) -> list[float]:
    with_weight = [e for e in existing if e.weight is not None]
    if with_weight and len(with_weight) != len(existing):
        missing = next(e for e in existing if e.weight is None)
        raise PlanError(f"{missing.where}: give every dataset a weight, or none (then shares follow token counts)")
    if with_weight:
        total = sum(e.weight for e in existing)
        if not settings.normalize_existing_weights and abs(total - 1.0) > settings.weight_sum_tolerance:
            raise PlanError(
                f"existing blend weights sum to {total:.6g}, not 1 (tolerance {settings.weight_sum_tolerance:g}): "
                f"fix them ({', '.join(f'{e.name}={e.weight:g}' for e in existing)}) or set "
                f"blend.normalize_existing_weights=true"
            )
        return [e.weight / total for e in existing]
    missing = [e for e in existing if e.tokens is None]
    if missing:
        raise PlanError(f"{missing[0].where}: no weight and no token count (and its .idx is not readable here)")
    total = sum(e.tokens for e in existing)
    return [e.tokens / total for e in existing]
