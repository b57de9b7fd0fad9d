"""The limits the water filling works within: each group's budget and each unit's floor and cap.

A group's budget is its quota of the synthetic budget (by default per `kind`), or the whole
synthetic budget when there are no quotas. A unit's cap is the least of max_epochs passes over its
distinct tokens and max_share of the synthetic budget; its floor is min_share of it. max_share is
raised, for one group, to the least share with which its caps can hold its budget; floors and caps
that cannot fill a budget are errors that say which setting to change.
"""

from __future__ import annotations

import math
from collections import defaultdict

from nemo_taskseed.blend.settings import PlanSettings
from nemo_taskseed.blend.units import Family
from nemo_taskseed.schema.plan import PlanError


def _check_quotas(name: str, key: str, quotas: dict[str, float], present: dict[str, list]) -> None:
    for group, quota in quotas.items():
        if quota < 0:
            raise PlanError(f"blend.{name}.{group} = {quota:g} must be >= 0")
        if quota > 0 and group not in present:
            raise PlanError(
                f"blend.{name}.{group} = {quota:g} but no synthetic prefix has "
                f"{key} {group!r} (present: {sorted(present)}); give every present {key} a quota "
                f"(blend.{name}), or blend.{name}=null to mix by size"
            )
    for group, fams in present.items():
        if group not in quotas:
            raise PlanError(
                f"{key} {group!r} (families {sorted(f.name for f in fams)}) has no quota in blend.{name} {quotas}; "
                f"add one, or blend.{name}=null to mix by size"
            )


def group_budgets(
    families: dict[str, Family], settings: PlanSettings, synthetic_budget: float
) -> dict[str, tuple[list[Family], float]]:
    """{group: (its units, its budget)}: one group per quota (by default per kind), or one pool."""
    if not settings.group_quotas:
        return {"all": (list(families.values()), synthetic_budget)}
    by_group: dict[str, list[Family]] = defaultdict(list)
    for fam in families.values():
        by_group[fam.group].append(fam)
    _check_quotas("group_quotas", settings.group_key, settings.group_quotas, by_group)
    return {group: (fams, synthetic_budget * settings.group_quotas[group]) for group, fams in by_group.items()}


def _max_share_to_fill(families: list[Family], budget: float, settings: PlanSettings, synthetic_budget: float):
    """max_share -> the share actually used: the configured one, or the least larger one with which
    the group's caps can hold its budget (a group with few or small families cannot fill it
    otherwise); a raised share is named in the plan's `bound`."""

    def capacity(share: float) -> float:
        total = 0.0
        for fam in families:
            limits = settings.limits_for(fam.base)
            caps = [math.inf]
            if limits.max_epochs is not None:
                caps.append(limits.max_epochs * fam.unique_tokens)
            if limits.max_share is not None:
                caps.append(max(share, limits.max_share) * synthetic_budget * fam.base_fraction)
            total += min(caps)
        return total

    need = budget * (1 - 1e-12)
    cache: dict[float, float] = {}

    def share_for(configured: float) -> float:
        if configured not in cache:
            if capacity(configured) >= need or capacity(1.0) < need:
                cache[configured] = configured  # feasible as set, or infeasible anyway (reported below)
            else:
                lo, hi = configured, 1.0
                for _ in range(100):
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if capacity(mid) < need else (lo, mid)
                cache[configured] = hi
        return cache[configured]

    return share_for


def bound_group(group: str, families: list[Family], budget: float, settings: PlanSettings, synthetic_budget: float):
    """Set the floor and cap of every unit in the group; errors when they cannot fill its budget."""
    share_of = _max_share_to_fill(families, budget, settings, synthetic_budget)
    for fam in families:
        limits = settings.limits_for(fam.base)
        caps = []
        if limits.max_epochs is not None:
            caps.append((limits.max_epochs * fam.unique_tokens, f"max_epochs={limits.max_epochs:g}"))
        if limits.max_share is not None:
            share = share_of(limits.max_share)
            raised = (
                f" (raised from {limits.max_share:g} so the group can fill its budget)"
                if share > limits.max_share
                else ""
            )
            # A family planned as several format units shares its cap (and floor) between them.
            caps.append((share * synthetic_budget * fam.base_fraction, f"max_share={share:.4g}{raised}"))
        fam.cap, fam.cap_reason = min(caps, default=(math.inf, ""))
        fam.floor = limits.min_share * synthetic_budget * fam.base_fraction
        if fam.floor > fam.cap and fam.base not in settings.family_overrides:
            # The global floor on a family too small to fill it: it takes all its cap allows.
            fam.floor = fam.cap
        if fam.floor > fam.cap:
            raise PlanError(
                f"family {fam.name!r}: floor min_share={limits.min_share:g} ({fam.floor:,.0f} tokens) exceeds its cap "
                f"{fam.cap_reason} ({fam.cap:,.0f} tokens from {fam.tokens:,} available): "
                f"raise its max_epochs/max_share or lower its min_share"
            )
    floors = sum(f.floor for f in families)
    caps = sum(f.cap for f in families)
    if floors > budget * (1 + 1e-12):
        raise PlanError(
            f"group {group!r}: floors need {floors:,.0f} tokens but the group's budget is {budget:,.0f}: "
            f"lower blend.min_share or the floors in blend.family_overrides"
        )
    if caps < budget * (1 - 1e-12):
        detail = ", ".join(f"{f.name} <= {f.cap:,.0f} ({f.cap_reason} of {f.tokens:,})" for f in families)
        raise PlanError(
            f"group {group!r}: caps cannot fill the budget: {budget:,.0f} tokens needed, at most {caps:,.0f} "
            f"allowed [{detail}]. Raise blend.max_epochs/max_share, lower blend.synthetic_share or "
            f"blend.total_tokens, or add data"
        )
