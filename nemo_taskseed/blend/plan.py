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
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from nemo_taskseed.blend.sources import ExistingEntry, SyntheticPrefix, count_prefix_tokens, prefix_exists
from nemo_taskseed.config import section_settings
from nemo_taskseed.schema.plan import PLAN_SCHEMA, PlanError
from nemo_taskseed.schema.records import FORMATS

MULTIPLE_CHOICE = "multiple_choice"  # the format the quota's tilt favours; the other is generative
# The format tilt's reach: exp(THETA * 0.01) = e^100, so at +-THETA families whose multiple-choice
# fractions differ by 1% or more are as far apart as floats go (the quota's extreme).
THETA = 1e4


@dataclass
class FamilyLimits:
    max_epochs: float | None = None
    max_share: float | None = None
    min_share: float = 0.0


@dataclass
class PlanSettings:
    """`blend.*` (configs/base/blend.yaml holds the paper's mixture defaults and says why)."""

    total_tokens: int
    seq_length: int
    synthetic_share: float
    temperature: float
    max_epochs: float | None
    max_share: float | None
    min_share: float
    family_overrides: dict[str, FamilyLimits]
    group_key: str
    group_quotas: dict[str, float]
    variants: str | dict[str, float]  # "all" | "one_per_item" | {variant: weight}
    format_quotas: dict[str, float]
    normalize_existing_weights: bool
    require_existing_prefixes: bool
    weight_sum_tolerance: float

    @classmethod
    def from_config(cls, cfg, **overrides) -> PlanSettings:
        """From the full config or its `blend` section; `overrides` replace fields. A family's
        override inherits the section's limits it does not set."""
        get = {**section_settings(cls, cfg, "blend"), **overrides}.get
        family_overrides = {}
        for family, limits in (get("family_overrides") or {}).items():
            if isinstance(limits, FamilyLimits):
                family_overrides[str(family)] = limits
                continue
            limits = dict(limits)
            unknown = set(limits) - {"max_epochs", "max_share", "min_share"}
            if unknown:
                raise PlanError(f"blend.family_overrides.{family}: unknown key(s) {sorted(unknown)}")
            family_overrides[str(family)] = FamilyLimits(
                max_epochs=limits.get("max_epochs", get("max_epochs")),
                max_share=limits.get("max_share", get("max_share")),
                min_share=limits.get("min_share", get("min_share") or 0.0),
            )
        settings = cls(
            total_tokens=int(float(get("total_tokens"))),
            seq_length=int(get("seq_length")),
            synthetic_share=float(get("synthetic_share")),
            temperature=float(get("temperature")),
            max_epochs=None if get("max_epochs") is None else float(get("max_epochs")),
            max_share=None if get("max_share") is None else float(get("max_share")),
            min_share=float(get("min_share") or 0.0),
            family_overrides=family_overrides,
            group_key=str(get("group_key")),
            group_quotas={str(k): float(v) for k, v in (get("group_quotas") or {}).items()},
            variants=_variants_setting(get("variants")),
            format_quotas={str(k): float(v) for k, v in (get("format_quotas") or {}).items()},
            normalize_existing_weights=bool(get("normalize_existing_weights")),
            require_existing_prefixes=bool(get("require_existing_prefixes")),
            weight_sum_tolerance=float(get("weight_sum_tolerance")),
        )
        settings.check()
        return settings

    def check(self) -> None:
        if self.total_tokens <= 0:
            raise PlanError(f"blend.total_tokens must be > 0, got {self.total_tokens}")
        if self.seq_length <= 0:
            raise PlanError(f"blend.seq_length must be > 0, got {self.seq_length}")
        if not 0.0 < self.synthetic_share <= 1.0:
            raise PlanError(f"blend.synthetic_share must be in (0, 1], got {self.synthetic_share}")
        if self.temperature <= 0:
            raise PlanError(
                f"blend.temperature must be > 0 (1 = natural sizes, large = uniform), got {self.temperature}"
            )
        for label, limits in [("blend", self.default_limits())] + [
            (f"blend.family_overrides.{f}", lim) for f, lim in self.family_overrides.items()
        ]:
            if limits.max_epochs is not None and limits.max_epochs <= 0:
                raise PlanError(f"{label}.max_epochs must be > 0 or null, got {limits.max_epochs}")
            if limits.max_share is not None and not 0 < limits.max_share <= 1:
                raise PlanError(f"{label}.max_share must be in (0, 1] or null, got {limits.max_share}")
            if not 0 <= limits.min_share < 1:
                raise PlanError(f"{label}.min_share must be in [0, 1), got {limits.min_share}")

        if isinstance(self.variants, dict) and (not self.variants or any(w < 0 for w in self.variants.values())):
            raise PlanError(f"blend.variants: weights must be >= 0 and not all absent, got {self.variants}")
        for label, quotas in (("group_quotas", self.group_quotas), ("format_quotas", self.format_quotas)):
            if quotas and abs(sum(quotas.values()) - 1.0) > self.weight_sum_tolerance:
                raise PlanError(f"blend.{label} sum to {sum(quotas.values()):.6g}, not 1: {quotas}")
        unknown = sorted(set(self.format_quotas) - set(FORMATS))
        if unknown:
            raise PlanError(f"blend.format_quotas: unknown format(s) {unknown}; the formats are {list(FORMATS)}")
        negative = {k: v for k, v in self.format_quotas.items() if v < 0}
        if negative:
            raise PlanError(f"blend.format_quotas must be >= 0, got {negative}")

    def default_limits(self) -> FamilyLimits:
        return FamilyLimits(self.max_epochs, self.max_share, self.min_share)

    def limits_for(self, family: str) -> FamilyLimits:
        """Limits of a family (by its name without a /format suffix)."""
        return self.family_overrides.get(family, self.default_limits())


def _variants_setting(value) -> str | dict[str, float]:
    if hasattr(value, "items"):
        return {str(k): float(v) for k, v in dict(value).items()}
    if value not in ("all", "one_per_item"):
        raise PlanError(f"blend.variants must be all, one_per_item or {{variant: weight}}, got {value!r}")
    return str(value)


@dataclass
class _Family:
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


def _variant_shares(fam: _Family, variants, notes: list[str]) -> dict:
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


def _prefix_shares(fam: _Family) -> dict[str, float]:
    """Share of a unit's planned tokens per prefix (by prefix path): its variant's share, split over
    the variant's prefixes by size (equal epochs)."""
    by_variant: dict = defaultdict(int)
    for p in fam.prefixes:
        by_variant[p.variant] += p.tokens
    return {p.prefix: fam.variant_share[p.variant] * p.tokens / by_variant[p.variant] for p in fam.prefixes}


def _format_fractions(prefix: SyntheticPrefix) -> dict[str, float] | None:
    """Share of the prefix's tokens per format, or None when they were not counted."""
    if prefix.format_tokens is None:
        return None
    total = sum(prefix.format_tokens.values())
    return {f: t / total for f, t in sorted(prefix.format_tokens.items()) if t > 0} if total else None


def _format_problem(synthetic: list[SyntheticPrefix]) -> str | None:
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


def _group_budgets(
    families: dict[str, _Family], settings: PlanSettings, synthetic_budget: float
) -> dict[str, tuple[list[_Family], float]]:
    """{group: (its units, its budget)}: one group per quota (by default per kind), or one pool."""
    if not settings.group_quotas:
        return {"all": (list(families.values()), synthetic_budget)}
    by_group: dict[str, list[_Family]] = defaultdict(list)
    for fam in families.values():
        by_group[fam.group].append(fam)
    _check_quotas("group_quotas", settings.group_key, settings.group_quotas, by_group)
    return {group: (fams, synthetic_budget * settings.group_quotas[group]) for group, fams in by_group.items()}


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


def _fill(groups: dict[str, tuple[list[_Family], float]], settings: PlanSettings, theta: float = 0.0) -> None:
    """Water-fill every group's budget over its units (floors and caps set), tilted by `theta`."""
    for families, budget in groups.values():
        weights = [f.unique_tokens ** (1.0 / settings.temperature) for f in families]
        tilt = [f.multiple_choice or 0.0 for f in families] if theta else None
        allocation = water_fill(
            weights, [f.floor for f in families], [f.cap for f in families], budget, tilt=tilt, theta=theta
        )
        for fam, tokens in zip(families, allocation):
            fam.planned = tokens


def _multiple_choice_share(families: list[_Family]) -> float:
    total = sum(f.planned for f in families)
    return sum(f.planned * f.multiple_choice for f in families) / total if total else 0.0


def _meet_format_quota(groups: dict[str, tuple[list[_Family], float]], settings: PlanSettings) -> dict:
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
        _fill(groups, settings, theta)
        extremes[theta] = (
            _multiple_choice_share(all_units),
            {g: _multiple_choice_share(fams) for g, (fams, budget) in groups.items() if budget > 0},
        )
    low, high = extremes[-THETA][0], extremes[THETA][0]
    tolerance = 1e-9
    if target < low - tolerance or target > high + tolerance:
        theta = -THETA if target < low else THETA
        _fill(groups, settings, theta)
        status = "relaxed"
    else:
        lo_theta, hi_theta = -THETA, THETA
        theta = 0.0
        for _ in range(200):
            _fill(groups, settings, theta)
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


def _max_share_to_fill(families: list[_Family], budget: float, settings: PlanSettings, synthetic_budget: float):
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


def _bound_group(group: str, families: list[_Family], budget: float, settings: PlanSettings, synthetic_budget: float):
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


def _largest_remainder(values: list[float], total: int) -> list[int]:
    """Round to integers that sum exactly to `total` (values already sum to ~total)."""
    floors = [math.floor(v) for v in values]
    short = total - sum(floors)
    order = sorted(range(len(values)), key=lambda i: values[i] - floors[i], reverse=True)
    for i in order[: max(short, 0)]:
        floors[i] += 1
    return floors


def _existing_shares(existing: list[ExistingEntry], settings: PlanSettings) -> list[float]:
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


def plan_blend(
    synthetic: list[SyntheticPrefix], existing: list[ExistingEntry], settings: PlanSettings, existing_name: str = "none"
) -> dict:
    """The plan as a JSON-ready dict (see README (Tokenize) for the fields)."""
    settings.check()
    if not synthetic:
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

    total = settings.total_tokens
    synthetic_budget = total * synthetic_share
    existing_budget = total - synthetic_budget

    # Planning units: families (family/format when the manifest groups by format), then groups.
    notes: list[str] = []
    format_problem = _format_problem(synthetic) if settings.format_quotas else None
    use_format = bool(settings.format_quotas) and format_problem is None
    split_format = use_format and all(p.format for p in synthetic)
    fractions = {p.prefix: _format_fractions(p) for p in synthetic}
    families: dict[str, _Family] = {}
    for prefix in synthetic:
        unit = f"{prefix.family}/{prefix.format}" if split_format else prefix.family
        fam = families.get(unit)
        if fam is None:
            fam = families[unit] = _Family(unit, prefix.group, 0, [])
            fam.base, fam.format = prefix.family, prefix.format if split_format else "all"
        elif fam.group != prefix.group:
            raise PlanError(
                f"family {prefix.family!r} spans groups {fam.group!r} and {prefix.group!r} "
                f"(prefix {prefix.name}); quotas need one group per family"
            )
        fam.tokens += prefix.tokens
        fam.prefixes.append(prefix)
    unknown_override = sorted(set(settings.family_overrides) - {f.base for f in families.values()})
    if unknown_override:
        raise PlanError(
            f"blend.family_overrides names unknown famil(ies) {unknown_override}; "
            f"known: {sorted({f.base for f in families.values()})}"
        )
    for fam in families.values():
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
                share * fractions[prefix].get(MULTIPLE_CHOICE, 0.0) for prefix, share in _prefix_shares(fam).items()
            )

    per_base: dict[str, float] = defaultdict(float)
    for fam in families.values():
        per_base[fam.base] += fam.unique_tokens
    for fam in families.values():
        fam.base_fraction = fam.unique_tokens / per_base[fam.base] if per_base[fam.base] else 1.0

    groups = _group_budgets(families, settings, synthetic_budget)
    for group, (fams, budget) in groups.items():
        if budget > 0:
            _bound_group(group, fams, budget, settings, synthetic_budget)
    solved = None
    if use_format:
        solved = _meet_format_quota(groups, settings)
    else:
        _fill(groups, settings)

    # Entries in tokens (floats), then integers that add up to the budget exactly.
    rows: list[dict] = []
    for fam in sorted(families.values(), key=lambda f: f.name):
        limits = settings.limits_for(fam.base)
        bound = None
        if fam.planned >= fam.cap * (1 - 1e-9):
            bound = fam.cap_reason
        elif fam.floor > 0 and fam.planned <= fam.floor * (1 + 1e-9):
            bound = f"min_share={limits.min_share:g}"
        prefix_shares = _prefix_shares(fam)
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
                    "_planned": fam.planned * prefix_shares[prefix.prefix],
                    "bound": bound,
                    # multiple_choice | generative | mixed (see format_shares); None: not counted.
                    "format": prefix.format if not formats else next(iter(formats)) if len(formats) == 1 else "mixed",
                    "format_shares": formats,
                }
            )
    if existing:
        shares = _existing_shares(existing, settings)
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
    planned = _largest_remainder([r.pop("_planned") for r in rows], total)
    zero = [r["name"] for r, t in zip(rows, planned) if t == 0]
    rows = [dict(r, tokens=t) for r, t in zip(rows, planned) if t > 0]
    for row in rows:
        row["share"] = row["tokens"] / total
        row["weight"] = row["share"]
        row["epochs"] = row["tokens"] / row["available_tokens"] if row["available_tokens"] else None
        row["samples"] = row["tokens"] / settings.seq_length

    group_summary: dict[str, dict] = {}
    for row in rows:
        g = group_summary.setdefault(row["group"], {"tokens": 0, "share": 0.0, "quota": None})
        g["tokens"] += row["tokens"]
        g["share"] += row["share"]
    for group, quota in settings.group_quotas.items():
        group_summary.setdefault(group, {"tokens": 0, "share": 0.0, "quota": None})["quota"] = quota
    family_summary = {
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
    formats, warnings = _format_report(rows, fractions, settings, format_problem, solved)
    return {
        "schema": PLAN_SCHEMA,
        "seq_length": settings.seq_length,
        "total_tokens": total,
        "total_samples": math.ceil(total / settings.seq_length),
        "synthetic_share": synthetic_share,
        "synthetic_tokens": sum(r["tokens"] for r in rows if r["source"] == "synthetic"),
        "existing_blend": existing_name,
        "data_paths": [[row["weight"], row["prefix"]] for row in rows],
        "entries": rows,
        "groups": group_summary,
        "families": family_summary,
        "dropped_zero_token_entries": zero,
        "settings": {
            "temperature": settings.temperature,
            "max_epochs": settings.max_epochs,
            "max_share": settings.max_share,
            "min_share": settings.min_share,
            "group_key": settings.group_key,
            "group_quotas": settings.group_quotas,
            "family_overrides": {k: vars(v) for k, v in settings.family_overrides.items()},
            "variants": settings.variants,
            "format_quotas": settings.format_quotas,
        },
        "formats": formats,
        "notes": notes,
        # What the settings asked for and the plan does not do (relaxed or skipped), with why.
        "warnings": warnings,
    }


def _percent(share: float) -> str:
    return f"{100 * share:.2f}%"


def _format_report(
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
