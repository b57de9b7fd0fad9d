"""Plan a token budget over synthetic prefixes and an existing pretraining blend.

Everything is planned in tokens and only converted to Megatron weights at the end: GPTDataset
samples are `seq_length`-token windows packed across documents, so a dataset's share of samples
is its share of tokens, whatever its document lengths.

Synthetic budget, top down:
  1. quotas split it between groups (by default `kind`: knowledge vs reasoning);
  2. inside a group, families get `lambda * size**(1/temperature)`, clipped to
     [floor, cap] with floor = min_share * synthetic budget and
     cap = min(max_epochs * family tokens, max_share * synthetic budget);
     `lambda` is found by bisection so the group budget is filled exactly (water filling: what a
     capped family cannot take goes to the others in proportion to their weights);
  3. a family's tokens go to its prefixes (variants) in proportion to their sizes (equal epochs),
     or by `variants` weights.

Variants (`blend.variants`): every generated item is written in several variants (label, answer,
reasoning, context: enrich.variants), one prefix each. `all` mixes them by size, so a family's
items weigh (and repeat) once per variant. `one_per_item` (default) counts a family's unique
content once: its size is its mean variant size, and max_epochs caps passes over its items
(all variants together). A mapping {variant: weight} does the same and splits the family's
tokens over its variants by those weights.

Format quotas (`blend.format_quotas`, e.g. multiple_choice 0.6 / generative 0.4) use the tokens per
format that tokenize records for every prefix (`format_tokens`): a prefix gives its multiple-choice
tokens to multiple choice and its generative tokens to generative, so a family's multiple-choice
fraction is fixed by its prefixes (a mixed prefix counts for both) and the quota is one linear
constraint on the families' tokens. It is met by the same water filling as the groups, with every
family's weight tilted by exp(theta * its multiple-choice fraction), and theta found by bisection
(the multiple-choice share only grows with theta). Water filling gives, of all plans within the
floors and caps, the one closest to the weights in relative entropy; tilted, it gives the closest
one that also meets the quota. When the manifest groups by format (tokenize.group_by [family,
format, variant]), a family's formats are separate units and the tilt can move tokens between them.

When the quota cannot hold together with the kind quotas, caps and floors, it is the one relaxed:
the plan is the one for the nearest achievable ratio (theta at its extreme: the families leaning
most to the wanted format get all their caps allow first) and says so in `formats` and `warnings`.
Manifests without per-format tokens (older ones) or with records without a format skip it, with
the reason.

max_share is a share of the synthetic budget. When a group's families cannot fill its budget under
it (few or small families), it is raised to the least share that can, and the plan's `bound`
names the raised value. The global min_share on a family too small for it is clipped to the
family's cap; a floor from family_overrides that the cap cannot meet is an error.

Where each part lives: settings.py (the `blend.*` controls), units.py (planning units and their
token accounting), bounds.py (group budgets, floors and caps), fill.py (water filling and the
format tilt), existing.py (the existing blend's datasets and shares), report.py (entries, rounding
and summaries). `plan_blend` here puts them together; planner.py drives it from the config.
"""

from __future__ import annotations

import math

from nemo_taskseed.blend.bounds import bound_group, group_budgets
from nemo_taskseed.blend.fill import fill_groups, meet_format_quota
from nemo_taskseed.blend.report import (
    existing_rows,
    family_summary,
    format_report,
    group_summary,
    round_rows,
    settings_summary,
    synthetic_rows,
)
from nemo_taskseed.blend.settings import PlanSettings
from nemo_taskseed.blend.sources import ExistingEntry, SyntheticPrefix
from nemo_taskseed.blend.units import Family, format_fractions, format_problem, planning_units
from nemo_taskseed.schema.plan import PLAN_SCHEMA, PlanError


def plan_blend(
    synthetic: list[SyntheticPrefix], existing: list[ExistingEntry], settings: PlanSettings, existing_name: str = "none"
) -> dict:
    """The plan as a JSON-ready dict (see README (Tokenize) for the fields)."""
    _check_inputs(synthetic, existing, settings)
    total = settings.total_tokens
    synthetic_budget = total * settings.synthetic_share
    existing_budget = total - synthetic_budget

    notes: list[str] = []
    if synthetic_budget == 0:
        # No synthetic data: the existing blend alone (the baseline arm of `taskseed ablate`).
        families, rows = {}, []
    else:
        # Planning units: families (family/format when the manifest groups by format), then groups.
        problem = format_problem(synthetic) if settings.format_quotas else None
        use_format = bool(settings.format_quotas) and problem is None
        split_format = use_format and all(p.format for p in synthetic)
        fractions = {p.prefix: format_fractions(p) for p in synthetic}
        families = planning_units(synthetic, settings, split_format, fractions, notes)
        solved = _solve(families, settings, synthetic_budget, use_format)
        # Entries in tokens (floats), then integers that add up to the budget exactly.
        rows = synthetic_rows(families, fractions, settings)
    if existing:
        rows += existing_rows(existing, settings, existing_budget, existing_name)
    rows, zero = round_rows(rows, total, settings.seq_length)
    if synthetic_budget:
        formats, warnings = format_report(rows, fractions, settings, problem, solved)
    else:
        formats, warnings = {"quotas": None, "status": "off", "reason": "synthetic_share 0"}, []
    return {
        "schema": PLAN_SCHEMA,
        "seq_length": settings.seq_length,
        "total_tokens": total,
        "total_samples": math.ceil(total / settings.seq_length),
        "synthetic_share": settings.synthetic_share,
        "synthetic_tokens": sum(r["tokens"] for r in rows if r["source"] == "synthetic"),
        "existing_blend": existing_name,
        "data_paths": [[row["weight"], row["prefix"]] for row in rows],
        "entries": rows,
        "groups": group_summary(rows, settings),
        "families": family_summary(families, rows, synthetic_budget),
        "dropped_zero_token_entries": zero,
        "settings": settings_summary(settings),
        "formats": formats,
        "notes": notes,
        # What the settings asked for and the plan does not do (relaxed or skipped), with why.
        "warnings": warnings,
    }


def _check_inputs(synthetic: list[SyntheticPrefix], existing: list[ExistingEntry], settings: PlanSettings) -> None:
    """Errors for a plan that cannot be made: bad settings, nothing to blend, no existing blend to
    give its share to, a prefix listed twice."""
    settings.check()
    if not synthetic and settings.synthetic_share > 0:
        raise PlanError("no synthetic prefixes to blend")
    synthetic_share = settings.synthetic_share
    if not existing and synthetic_share < 1.0:
        raise PlanError(
            f"blend.synthetic_share={synthetic_share:g} leaves {1 - synthetic_share:.0%} of the budget to an existing "
            f"pretraining blend, but blend.existing is not set (give one, or set blend.synthetic_share=1)"
        )
    seen: dict[str, str] = {}
    for item in [s.prefix for s in synthetic] + [e.prefix for e in existing]:
        if item in seen:
            raise PlanError(f"prefix {item} appears twice in the blend")
        seen[item] = item


def _solve(
    families: dict[str, Family], settings: PlanSettings, synthetic_budget: float, use_format: bool
) -> dict | None:
    """Plan every unit's tokens (`planned`) within its group's budget, floor and cap; with the
    format quota, returns what `meet_format_quota` did (None without it)."""
    groups = group_budgets(families, settings, synthetic_budget)
    for group, (fams, budget) in groups.items():
        if budget > 0:
            bound_group(group, fams, budget, settings, synthetic_budget)
    if use_format:
        return meet_format_quota(groups, settings)
    fill_groups(groups, settings)
    return None
