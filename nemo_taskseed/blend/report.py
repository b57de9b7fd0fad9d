"""The plan's contents, from the solved units: its entries (one per prefix, rounded to integer
tokens that add up to the budget), the group and family summaries, the settings it was made with,
and the format report with the warnings it raises."""

from __future__ import annotations

import math
from collections import defaultdict

from nemo_taskseed.blend.existing import existing_shares
from nemo_taskseed.blend.settings import PlanSettings
from nemo_taskseed.blend.sources import ExistingEntry
from nemo_taskseed.blend.units import MULTIPLE_CHOICE, Family, prefix_shares
from nemo_taskseed.schema.records import FORMATS


def synthetic_rows(
    families: dict[str, Family], fractions: dict[str, dict[str, float] | None], settings: PlanSettings
) -> list[dict]:
    """One entry per synthetic prefix, by unit name then prefix name, planned tokens as floats in `_planned`."""
    rows: list[dict] = []
    for fam in sorted(families.values(), key=lambda f: f.name):
        limits = settings.limits_for(fam.base)
        bound = None
        if fam.planned >= fam.cap * (1 - 1e-9):
            bound = fam.cap_reason
        elif fam.floor > 0 and fam.planned <= fam.floor * (1 + 1e-9):
            bound = f"min_share={limits.min_share:g}"
        shares = prefix_shares(fam)
        for prefix in sorted(fam.prefixes, key=lambda p: p.name):
            formats = fractions[prefix.prefix]
            rows.append(
                {
                    "name": prefix.name,
                    "prefix": prefix.prefix,
                    "source": "synthetic",
                    "family": fam.base,
                    "variant": prefix.variant,
                    "kind": prefix.kind,
                    "group": prefix.group,
                    "documents": prefix.documents,
                    "available_tokens": prefix.tokens,
                    "_planned": fam.planned * shares[prefix.prefix],
                    "bound": bound,
                    # multiple_choice | generative | mixed (see format_shares); None: not counted.
                    "format": prefix.format if not formats else next(iter(formats)) if len(formats) == 1 else "mixed",
                    "format_shares": formats,
                }
            )
    return rows


def existing_rows(
    existing: list[ExistingEntry], settings: PlanSettings, existing_budget: float, existing_name: str
) -> list[dict]:
    """One entry per dataset of the existing blend, its share of the existing budget in `_planned`."""
    rows: list[dict] = []
    shares = existing_shares(existing, settings)
    for entry, share in zip(existing, shares):
        rows.append(
            {
                "name": entry.name,
                "prefix": entry.prefix,
                "source": "pretraining",
                "family": existing_name,
                "variant": None,
                "kind": "pretraining",
                "group": "pretraining",
                "documents": None,
                "available_tokens": entry.tokens,
                "_planned": existing_budget * share,
                "bound": None,
            }
        )
    return rows


def round_rows(rows: list[dict], total: int, seq_length: int) -> tuple[list[dict], list[str]]:
    """(the entries in integer tokens adding up to `total`, with share, weight, epochs and samples;
    the names of the entries rounded to 0 tokens, which are dropped)."""
    planned = _largest_remainder([r.pop("_planned") for r in rows], total)
    zero = [r["name"] for r, t in zip(rows, planned) if t == 0]
    rows = [dict(r, tokens=t) for r, t in zip(rows, planned) if t > 0]
    for row in rows:
        row["share"] = row["tokens"] / total
        row["weight"] = row["share"]
        row["epochs"] = row["tokens"] / row["available_tokens"] if row["available_tokens"] else None
        row["samples"] = row["tokens"] / seq_length
    return rows, zero


def _largest_remainder(values: list[float], total: int) -> list[int]:
    """Round to integers that sum exactly to `total` (values already sum to ~total)."""
    floors = [math.floor(v) for v in values]
    short = total - sum(floors)
    order = sorted(range(len(values)), key=lambda i: values[i] - floors[i], reverse=True)
    for i in order[: max(short, 0)]:
        floors[i] += 1
    return floors


def group_summary(rows: list[dict], settings: PlanSettings) -> dict[str, dict]:
    """{group: tokens, share of the total, quota} (a quota'd group without entries included)."""
    summary: dict[str, dict] = {}
    for row in rows:
        g = summary.setdefault(row["group"], {"tokens": 0, "share": 0.0, "quota": None})
        g["tokens"] += row["tokens"]
        g["share"] += row["share"]
    for group, quota in settings.group_quotas.items():
        summary.setdefault(group, {"tokens": 0, "share": 0.0, "quota": None})["quota"] = quota
    return summary


def family_summary(families: dict[str, Family], rows: list[dict], synthetic_budget: float) -> dict[str, dict]:
    """{unit: its tokens (as rounded), share of the synthetic budget, epochs, cap and floor}."""
    return {
        fam.name: {
            "group": fam.group,
            "available_tokens": fam.tokens,
            "tokens": sum(
                r["tokens"]
                for r in rows
                if r["source"] == "synthetic" and r["prefix"] in {p.prefix for p in fam.prefixes}
            ),
            "share_of_synthetic": fam.planned / synthetic_budget if synthetic_budget else 0.0,
            "epochs": fam.planned / fam.tokens,
            "cap_tokens": None if math.isinf(fam.cap) else fam.cap,
            # Passes over the family's distinct items (all variants together).
            "item_epochs": fam.planned / fam.unique_tokens if fam.unique_tokens else None,
            "floor_tokens": fam.floor,
            "multiple_choice_fraction": fam.multiple_choice,
        }
        for fam in families.values()
    }


def settings_summary(settings: PlanSettings) -> dict:
    """The settings that shaped the plan, as the plan records them."""
    return {
        "temperature": settings.temperature,
        "max_epochs": settings.max_epochs,
        "max_share": settings.max_share,
        "min_share": settings.min_share,
        "group_key": settings.group_key,
        "group_quotas": settings.group_quotas,
        "family_overrides": {k: vars(v) for k, v in settings.family_overrides.items()},
        "variants": settings.variants,
        "format_quotas": settings.format_quotas,
    }


def _percent(share: float) -> str:
    return f"{100 * share:.2f}%"


def format_report(
    rows: list[dict],
    fractions: dict[str, dict[str, float] | None],
    settings: PlanSettings,
    problem: str | None,
    solved: dict | None,
) -> tuple[dict, list[str]]:
    """The plan's `formats` (tokens and share of the synthetic tokens per format, from the rounded
    plan, whenever the manifest counts formats; the quota's status) and the warnings it raises."""
    synthetic = [r for r in rows if r["source"] == "synthetic"]
    report: dict = {"quotas": settings.format_quotas or None, "status": "off", "tokens": None, "shares": None}
    if synthetic and all(fractions[r["prefix"]] is not None for r in synthetic):
        tokens: dict[str, float] = defaultdict(float)
        for row in synthetic:
            for fmt, fraction in fractions[row["prefix"]].items():
                tokens[fmt] += row["tokens"] * fraction
        total = sum(r["tokens"] for r in synthetic)
        report["tokens"] = {fmt: round(t) for fmt, t in sorted(tokens.items())}
        report["shares"] = {fmt: t / total for fmt, t in sorted(tokens.items())}
    warnings: list[str] = []
    if not settings.format_quotas:
        return report, warnings
    if problem is not None:
        report.update(status="skipped", reason=problem)
        warnings.append(f"blend.format_quotas not applied: {problem}")
        return report, warnings
    report.update(solved)
    if solved["status"] == "relaxed":
        shares = report["shares"]
        low, high = solved["feasible"][MULTIPLE_CHOICE]
        limits = ["max_epochs, max_share and min_share"]
        if settings.group_quotas:
            quotas = ", ".join(f"{g} {q:.4g}" for g, q in settings.group_quotas.items())
            limits.insert(0, f"the {settings.group_key} quotas ({quotas})")
        by_group = ", ".join(
            f"{g} {_percent(r[MULTIPLE_CHOICE][0])}-{_percent(r[MULTIPLE_CHOICE][1])}"
            for g, r in sorted(solved["feasible_by_group"].items())
        )
        wanted = " / ".join(f"{f} {settings.format_quotas.get(f, 0.0):g}" for f in FORMATS)
        got = " / ".join(f"{f} {_percent(shares.get(f, 0.0))}" for f in FORMATS)
        report["reason"] = (
            f"{' and '.join(limits)} leave multiple choice between {_percent(low)} and {_percent(high)} of the "
            f"synthetic tokens (within each group: {by_group})"
        )
        warnings.append(
            f"blend.format_quotas relaxed: {wanted} cannot hold; {report['reason']}. Planned the closest: {got} "
            f"(the kind quotas and family limits come first; docs/blend.md)"
        )
    return report, warnings
