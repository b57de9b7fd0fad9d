"""Water filling: the units' tokens within their floors and caps, filling each group's budget.

Weights are `unique_tokens ** (1 / temperature)`; `water_fill` finds the level at which the
clipped weights add up to the budget. With a format quota, every weight is tilted by
exp(theta * the unit's multiple-choice fraction) and theta is bisected until the quota holds, or set
to its extreme when it cannot (the quota is the constraint that gives way).
"""

from __future__ import annotations

import math

import numpy as np

from nemo_taskseed.blend.settings import PlanSettings
from nemo_taskseed.blend.units import MULTIPLE_CHOICE, Family

# The format tilt's reach: exp(THETA * 0.01) = e^100, so at +-THETA families whose multiple-choice
# fractions differ by 1% or more are as far apart as floats go (the quota's extreme).
THETA = 1e4


def water_fill(
    weights: list[float],
    lower: list[float],
    upper: list[float],
    budget: float,
    *,
    tilt: list[float] | None = None,
    theta: float = 0.0,
) -> list[float]:
    """x_i = clip(lam * w_i * exp(theta * tilt_i), lower_i, upper_i) with sum(x) == budget (callers
    check feasibility).

    sum(x) is continuous and non-decreasing in lam, so bisection finds it. It bisects log(lam), so a
    steep tilt (the format quota at its extremes) neither overflows nor underflows; 200 halvings
    take the range down to rounding error.
    """
    lo = np.asarray(lower, dtype=np.float64)
    up = np.asarray(upper, dtype=np.float64)
    with np.errstate(divide="ignore"):
        scores = np.log(np.asarray(weights, dtype=np.float64))
    if tilt is not None:
        scores = scores + theta * np.asarray(tilt, dtype=np.float64)
    finite = scores[np.isfinite(scores)]
    if budget <= 0 or not finite.size:
        return lo.tolist()

    def filled(log_lam: float) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.minimum(np.maximum(np.exp(log_lam + scores), lo), up)

    # From every weighted term far below the budget (the floors alone) to every one at least the budget.
    lo_lam, hi_lam = math.log(budget) - float(finite.max()) - 60.0, math.log(budget) - float(finite.min())
    for _ in range(200):
        mid = (lo_lam + hi_lam) / 2
        if float(filled(mid).sum()) < budget:
            lo_lam = mid
        else:
            hi_lam = mid
    return filled(hi_lam).tolist()


def fill_groups(groups: dict[str, tuple[list[Family], float]], settings: PlanSettings, theta: float = 0.0) -> None:
    """Water-fill every group's budget over its units (floors and caps set), tilted by `theta`."""
    for families, budget in groups.values():
        weights = [f.unique_tokens ** (1.0 / settings.temperature) for f in families]
        tilt = [f.multiple_choice or 0.0 for f in families] if theta else None
        allocation = water_fill(
            weights, [f.floor for f in families], [f.cap for f in families], budget, tilt=tilt, theta=theta
        )
        for fam, tokens in zip(families, allocation):
            fam.planned = tokens


def _multiple_choice_share(families: list[Family]) -> float:
    total = sum(f.planned for f in families)
    return sum(f.planned * f.multiple_choice for f in families) / total if total else 0.0


def meet_format_quota(groups: dict[str, tuple[list[Family], float]], settings: PlanSettings) -> dict:
    """Fill the groups so that multiple choice gets its quota of the synthetic tokens, or as close
    to it as the rest of the plan allows; returns what was achievable and what was done.

    Priority when they conflict: the budget, max_epochs, floors and the kind quotas hold, and
    max_share is raised only to fill a kind's budget (never for the format ratio); the format
    ratio gives way. A demanding data engineer wants it in this order: the kind split is the
    paper's own measured mixture (~3.0M knowledge vs ~1.5M reasoning seeds) and the caps are what
    keeps one family (or a few epochs-hungry ones) from dominating, while the format ratio is a
    recipe figure (as cited in issue 14) that mostly restates which benchmarks exist (knowledge is
    largely multiple choice). Relaxing it to the closest achievable ratio (rather than failing, or
    dropping it for the size mix) keeps as much of it as the data allows; the plan's `formats`
    and `warnings` say exactly how far it is from the quota and why.
    """
    target = settings.format_quotas.get(MULTIPLE_CHOICE, 0.0)
    all_units = [f for fams, _ in groups.values() for f in fams]
    extremes = {}
    for theta in (-THETA, THETA):
        fill_groups(groups, settings, theta)
        extremes[theta] = (
            _multiple_choice_share(all_units),
            {g: _multiple_choice_share(fams) for g, (fams, budget) in groups.items() if budget > 0},
        )
    low, high = extremes[-THETA][0], extremes[THETA][0]
    tolerance = 1e-9
    if target < low - tolerance or target > high + tolerance:
        theta = -THETA if target < low else THETA
        fill_groups(groups, settings, theta)
        status = "relaxed"
    else:
        lo_theta, hi_theta = -THETA, THETA
        theta = 0.0
        for _ in range(200):
            fill_groups(groups, settings, theta)
            share = _multiple_choice_share(all_units)
            if abs(share - target) <= 1e-10:
                break
            lo_theta, hi_theta = (theta, hi_theta) if share < target else (lo_theta, theta)
            theta = (lo_theta + hi_theta) / 2
        status = "met"
    return {
        "status": status,
        "theta": theta,
        "feasible": {MULTIPLE_CHOICE: [low, high]},
        "feasible_by_group": {
            g: {MULTIPLE_CHOICE: [extremes[-THETA][1][g], extremes[THETA][1][g]]} for g in extremes[THETA][1]
        },
    }
