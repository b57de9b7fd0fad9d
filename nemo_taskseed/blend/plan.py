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
  3. a family's tokens go to its prefixes (variants) in proportion to their sizes (equal epochs).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from nemo_taskseed.blend.sources import ExistingEntry, PlanError, SyntheticPrefix, count_prefix_tokens, prefix_exists

PLAN_SCHEMA = "taskseed.blend-plan/1"


@dataclass
class FamilyLimits:
    max_epochs: float | None = None
    max_share: float | None = None
    min_share: float = 0.0


@dataclass
class PlanSettings:
    total_tokens: int = 100_000_000_000
    seq_length: int = 4096
    synthetic_share: float = 0.1
    temperature: float = 1.0
    max_epochs: float | None = 4.0
    max_share: float | None = None
    min_share: float = 0.0
    family_overrides: dict[str, FamilyLimits] = field(default_factory=dict)
    group_key: str = "kind"
    group_quotas: dict[str, float] = field(default_factory=dict)
    normalize_existing_weights: bool = False
    require_existing_prefixes: bool = True
    weight_sum_tolerance: float = 1e-6

    @classmethod
    def from_config(cls, section) -> "PlanSettings":
        get = section.get
        overrides = {}
        for family, limits in (get("family_overrides") or {}).items():
            limits = dict(limits)
            unknown = set(limits) - {"max_epochs", "max_share", "min_share"}
            if unknown:
                raise PlanError(f"blend.family_overrides.{family}: unknown key(s) {sorted(unknown)}")
            overrides[str(family)] = FamilyLimits(
                max_epochs=limits.get("max_epochs", get("max_epochs")),
                max_share=limits.get("max_share", get("max_share")),
                min_share=limits.get("min_share", get("min_share") or 0.0),
            )
        settings = cls(
            total_tokens=int(float(get("total_tokens", 100e9))),
            seq_length=int(get("seq_length", 4096)),
            synthetic_share=float(get("synthetic_share", 0.1)),
            temperature=float(get("temperature", 1.0)),
            max_epochs=None if get("max_epochs") is None else float(get("max_epochs")),
            max_share=None if get("max_share") is None else float(get("max_share")),
            min_share=float(get("min_share") or 0.0),
            family_overrides=overrides,
            group_key=str(get("group_key", "kind")),
            group_quotas={str(k): float(v) for k, v in (get("group_quotas") or {}).items()},
            normalize_existing_weights=bool(get("normalize_existing_weights", False)),
            require_existing_prefixes=bool(get("require_existing_prefixes", True)),
            weight_sum_tolerance=float(get("weight_sum_tolerance", 1e-6)),
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
            raise PlanError(f"blend.temperature must be > 0 (1 = natural sizes, large = uniform), got {self.temperature}")
        for label, limits in [("blend", self.default_limits())] + [
                (f"blend.family_overrides.{f}", lim) for f, lim in self.family_overrides.items()]:
            if limits.max_epochs is not None and limits.max_epochs <= 0:
                raise PlanError(f"{label}.max_epochs must be > 0 or null, got {limits.max_epochs}")
            if limits.max_share is not None and not 0 < limits.max_share <= 1:
                raise PlanError(f"{label}.max_share must be in (0, 1] or null, got {limits.max_share}")
            if not 0 <= limits.min_share < 1:
                raise PlanError(f"{label}.min_share must be in [0, 1), got {limits.min_share}")

    def default_limits(self) -> FamilyLimits:
        return FamilyLimits(self.max_epochs, self.max_share, self.min_share)

    def limits_for(self, family: str) -> FamilyLimits:
        return self.family_overrides.get(family, self.default_limits())


@dataclass
class _Family:
    name: str
    group: str
    tokens: int
    prefixes: list[SyntheticPrefix]
    floor: float = 0.0
    cap: float = math.inf
    cap_reason: str = ""
    planned: float = 0.0


def water_fill(weights: list[float], lower: list[float], upper: list[float], budget: float) -> list[float]:
    """x_i = clip(lam * w_i, lower_i, upper_i) with sum(x) == budget (callers check feasibility).

    sum(x) is continuous and non-decreasing in lam, so bisection finds it; 200 halvings take any
    float range down to rounding error.
    """
    def filled(lam: float) -> list[float]:
        return [min(max(lam * w, lo), up) for w, lo, up in zip(weights, lower, upper)]

    lo_lam, hi_lam = 0.0, 1.0
    while sum(filled(hi_lam)) < budget and hi_lam < 1e300:
        hi_lam *= 2.0
    for _ in range(200):
        mid = (lo_lam + hi_lam) / 2
        if sum(filled(mid)) < budget:
            lo_lam = mid
        else:
            hi_lam = mid
    return filled(hi_lam)


def _plan_group(group: str, families: list[_Family], budget: float, settings: PlanSettings, synthetic_budget: float):
    for fam in families:
        limits = settings.limits_for(fam.name)
        caps = []
        if limits.max_epochs is not None:
            caps.append((limits.max_epochs * fam.tokens, f"max_epochs={limits.max_epochs:g}"))
        if limits.max_share is not None:
            caps.append((limits.max_share * synthetic_budget, f"max_share={limits.max_share:g}"))
        fam.cap, fam.cap_reason = min(caps, default=(math.inf, ""))
        fam.floor = limits.min_share * synthetic_budget
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
    weights = [f.tokens ** (1.0 / settings.temperature) for f in families]
    allocation = water_fill(weights, [f.floor for f in families], [f.cap for f in families], budget)
    for fam, tokens in zip(families, allocation):
        fam.planned = tokens


def _largest_remainder(values: list[float], total: int) -> list[int]:
    """Round to integers that sum exactly to `total` (values already sum to ~total)."""
    floors = [math.floor(v) for v in values]
    short = total - sum(floors)
    order = sorted(range(len(values)), key=lambda i: values[i] - floors[i], reverse=True)
    for i in order[:max(short, 0)]:
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


def plan_blend(synthetic: list[SyntheticPrefix], existing: list[ExistingEntry], settings: PlanSettings,
               existing_name: str = "none") -> dict:
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

    # Families, then groups.
    families: dict[str, _Family] = {}
    for prefix in synthetic:
        fam = families.get(prefix.family)
        if fam is None:
            fam = families[prefix.family] = _Family(prefix.family, prefix.group, 0, [])
        elif fam.group != prefix.group:
            raise PlanError(
                f"family {prefix.family!r} spans groups {fam.group!r} and {prefix.group!r} "
                f"(prefix {prefix.name}); quotas need one group per family"
            )
        fam.tokens += prefix.tokens
        fam.prefixes.append(prefix)
    unknown_override = sorted(set(settings.family_overrides) - set(families))
    if unknown_override:
        raise PlanError(f"blend.family_overrides names unknown famil(ies) {unknown_override}; known: {sorted(families)}")

    by_group: dict[str, list[_Family]] = defaultdict(list)
    for fam in families.values():
        by_group[fam.group].append(fam)
    if settings.group_quotas:
        quotas = settings.group_quotas
        quota_sum = sum(quotas.values())
        if abs(quota_sum - 1.0) > settings.weight_sum_tolerance:
            raise PlanError(f"blend.group_quotas sum to {quota_sum:.6g}, not 1: {quotas}")
        for group, quota in quotas.items():
            if quota < 0:
                raise PlanError(f"blend.group_quotas.{group} = {quota:g} must be >= 0")
            if quota > 0 and group not in by_group:
                raise PlanError(f"blend.group_quotas.{group} = {quota:g} but no synthetic prefix has "
                                f"{settings.group_key} {group!r} (present: {sorted(by_group)})")
        for group, fams in by_group.items():
            if group not in quotas:
                raise PlanError(
                    f"{settings.group_key} {group!r} (families {sorted(f.name for f in fams)}) has no quota in "
                    f"blend.group_quotas {quotas}"
                )
        group_budgets = {g: synthetic_budget * quotas[g] for g in by_group}
    else:
        group_budgets = {"all": synthetic_budget}
        by_group = {"all": list(families.values())}

    for group, fams in by_group.items():
        if group_budgets[group] > 0:
            _plan_group(group, fams, group_budgets[group], settings, synthetic_budget)

    # Entries in tokens (floats), then integers that add up to the budget exactly.
    rows: list[dict] = []
    for fam in sorted(families.values(), key=lambda f: f.name):
        limits = settings.limits_for(fam.name)
        bound = None
        if fam.planned >= fam.cap * (1 - 1e-9):
            bound = fam.cap_reason
        elif fam.floor > 0 and fam.planned <= fam.floor * (1 + 1e-9):
            bound = f"min_share={limits.min_share:g}"
        for prefix in sorted(fam.prefixes, key=lambda p: p.name):
            rows.append({
                "name": prefix.name, "prefix": prefix.prefix, "source": "synthetic", "family": fam.name,
                "variant": prefix.variant, "kind": prefix.kind, "group": prefix.group,
                "documents": prefix.documents, "available_tokens": prefix.tokens,
                "_planned": fam.planned * prefix.tokens / fam.tokens, "bound": bound,
            })
    if existing:
        shares = _existing_shares(existing, settings)
        for entry, share in zip(existing, shares):
            rows.append({
                "name": entry.name, "prefix": entry.prefix, "source": "pretraining", "family": existing_name,
                "variant": None, "kind": "pretraining", "group": "pretraining", "documents": None,
                "available_tokens": entry.tokens, "_planned": existing_budget * share, "bound": None,
            })
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
        fam.name: {"group": fam.group, "available_tokens": fam.tokens,
                   "tokens": sum(r["tokens"] for r in rows if r["source"] == "synthetic" and r["family"] == fam.name),
                   "share_of_synthetic": fam.planned / synthetic_budget if synthetic_budget else 0.0,
                   "epochs": fam.planned / fam.tokens, "cap_tokens": None if math.isinf(fam.cap) else fam.cap,
                   "floor_tokens": fam.floor}
        for fam in families.values()
    }
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
            "temperature": settings.temperature, "max_epochs": settings.max_epochs, "max_share": settings.max_share,
            "min_share": settings.min_share, "group_key": settings.group_key, "group_quotas": settings.group_quotas,
            "family_overrides": {k: vars(v) for k, v in settings.family_overrides.items()},
        },
    }
