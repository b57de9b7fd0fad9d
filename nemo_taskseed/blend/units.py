"""Planning units and their token accounting.

Synthetic prefixes are grouped into units: one per family, or one per family and format when the
format quota applies and the manifest groups by format (family/format). Each unit knows its tokens,
its distinct content (`unique_tokens`: what max_epochs counts passes over, per `blend.variants`),
how its planned tokens split over its variants and prefixes, and which fraction of them is multiple
choice (from the per-format token counts tokenize records). plan.py's docstring describes the
method these feed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from nemo_taskseed.blend.settings import PlanSettings
from nemo_taskseed.blend.sources import SyntheticPrefix
from nemo_taskseed.schema.plan import PlanError
from nemo_taskseed.schema.records import FORMATS

MULTIPLE_CHOICE = "multiple_choice"  # the format the quota's tilt favours; the other is generative


@dataclass
class Family:
    """A planning unit: a family, or one format of it (name family/format)."""

    name: str
    group: str
    tokens: int
    prefixes: list[SyntheticPrefix]
    # Tokens of the family's distinct content: `tokens` with variants=all, else the mean variant size.
    unique_tokens: float = 0.0
    base: str = ""  # the family name (units are family/format when format quotas apply)
    format: str = "all"
    variant_share: dict = field(default_factory=dict)
    # Fraction of the unit's tokens that is multiple choice (fixed by its prefixes' format_tokens and
    # how the unit's tokens are split over them); None without per-format counts.
    multiple_choice: float | None = None
    base_fraction: float = 1.0  # this unit's part of its family's distinct tokens
    floor: float = 0.0
    cap: float = math.inf
    cap_reason: str = ""
    planned: float = 0.0


def _variant_shares(fam: Family, variants, notes: list[str]) -> dict:
    """Share of a family's tokens per variant: by size (all, one_per_item) or by weight."""
    sizes: dict = defaultdict(int)
    for p in fam.prefixes:
        sizes[p.variant] += p.tokens
    if not isinstance(variants, dict):
        return {v: t / fam.tokens for v, t in sizes.items()}
    missing = sorted(str(v) for v in sizes if (v or "all") not in variants)
    if missing:
        notes.append(f"family {fam.name!r}: variant(s) {missing} have no weight in blend.variants: not sampled")
    weights = {v: float(variants.get(v or "all", 0.0)) for v in sizes}
    total = sum(weights.values())
    if total <= 0:
        raise PlanError(
            f"family {fam.name!r}: blend.variants gives weight 0 to all of its variants {sorted(str(v) for v in sizes)}"
        )
    return {v: w / total for v, w in weights.items()}


def prefix_shares(fam: Family) -> dict[str, float]:
    """Share of a unit's planned tokens per prefix (by prefix path): its variant's share, split over
    the variant's prefixes by size (equal epochs)."""
    by_variant: dict = defaultdict(int)
    for p in fam.prefixes:
        by_variant[p.variant] += p.tokens
    return {p.prefix: fam.variant_share[p.variant] * p.tokens / by_variant[p.variant] for p in fam.prefixes}


def format_fractions(prefix: SyntheticPrefix) -> dict[str, float] | None:
    """Share of the prefix's tokens per format, or None when they were not counted."""
    if prefix.format_tokens is None:
        return None
    total = sum(prefix.format_tokens.values())
    return {f: t / total for f, t in sorted(prefix.format_tokens.items()) if t > 0} if total else None


def format_problem(synthetic: list[SyntheticPrefix]) -> str | None:
    """Why these prefixes cannot be weighed by format (None: they can)."""
    missing = [p.name for p in synthetic if p.format_tokens is None]
    if missing:
        return (
            f"the tokenize manifest records no tokens per format (format_tokens) for {len(missing)} of "
            f"{len(synthetic)} prefixes (e.g. {missing[0]}): it predates them; re-run `taskseed tokenize`"
        )
    other = defaultdict(list)
    for p in synthetic:
        for fmt, tokens in p.format_tokens.items():
            if tokens > 0 and fmt not in FORMATS:
                other[fmt].append(p.name)
    if other:
        detail = "; ".join(
            f"{fmt!r} in {len(names)} prefixes (e.g. {names[0]})" for fmt, names in sorted(other.items())
        )
        return (
            f"some records have no format or one outside {list(FORMATS)} ({detail}; 'unknown' = no `format` field), "
            f"so the format shares are not known"
        )
    return None


def planning_units(
    synthetic: list[SyntheticPrefix],
    settings: PlanSettings,
    split_format: bool,
    fractions: dict[str, dict[str, float] | None],
    notes: list[str],
) -> dict[str, Family]:
    """{unit name: unit}, each with its tokens, variant shares, distinct tokens, multiple-choice
    fraction and part of its family; `notes` gets the variants that blend.variants leaves out."""
    families = _group_prefixes(synthetic, split_format)
    unknown_override = sorted(set(settings.family_overrides) - {f.base for f in families.values()})
    if unknown_override:
        raise PlanError(
            f"blend.family_overrides names unknown famil(ies) {unknown_override}; "
            f"known: {sorted({f.base for f in families.values()})}"
        )
    for fam in families.values():
        _measure(fam, settings, fractions, notes)
    _set_base_fractions(families)
    return families


def _group_prefixes(synthetic: list[SyntheticPrefix], split_format: bool) -> dict[str, Family]:
    """The units with their prefixes, in manifest order; a family must sit in one group."""
    families: dict[str, Family] = {}
    for prefix in synthetic:
        unit = f"{prefix.family}/{prefix.format}" if split_format else prefix.family
        fam = families.get(unit)
        if fam is None:
            fam = families[unit] = Family(unit, prefix.group, 0, [])
            fam.base, fam.format = prefix.family, prefix.format if split_format else "all"
        elif fam.group != prefix.group:
            raise PlanError(
                f"family {prefix.family!r} spans groups {fam.group!r} and {prefix.group!r} "
                f"(prefix {prefix.name}); quotas need one group per family"
            )
        fam.tokens += prefix.tokens
        fam.prefixes.append(prefix)
    return families


def _measure(
    fam: Family, settings: PlanSettings, fractions: dict[str, dict[str, float] | None], notes: list[str]
) -> None:
    """Set the unit's variant shares, distinct tokens and multiple-choice fraction."""
    fam.variant_share = _variant_shares(fam, settings.variants, notes)
    if settings.variants == "all":
        fam.unique_tokens = float(fam.tokens)
    else:
        # The family's distinct content: one variant's worth (mean over the variants it samples).
        used = [v for v, share in fam.variant_share.items() if share > 0]
        fam.unique_tokens = sum(p.tokens for p in fam.prefixes if p.variant in used) / max(len(used), 1)

    if all(fractions[p.prefix] is not None for p in fam.prefixes):
        # Each prefix brings its own multiple-choice fraction, in the proportion the unit samples it.
        fam.multiple_choice = sum(
            share * fractions[prefix].get(MULTIPLE_CHOICE, 0.0) for prefix, share in prefix_shares(fam).items()
        )


def _set_base_fractions(families: dict[str, Family]) -> None:
    """Each unit's part of its family's distinct tokens (1 unless the family is planned per format)."""
    per_base: dict[str, float] = defaultdict(float)
    for fam in families.values():
        per_base[fam.base] += fam.unique_tokens
    for fam in families.values():
        fam.base_fraction = fam.unique_tokens / per_base[fam.base] if per_base[fam.base] else 1.0
