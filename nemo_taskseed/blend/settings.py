"""`blend.*` and `blend.verify` as typed, checked settings.

The plan's controls live here: the budget (total_tokens, seq_length, synthetic_share), how families
are weighed (temperature, variants), the per-family limits (max_epochs, max_share, min_share, and
their family_overrides), the group and format quotas, and how the existing blend is read. The
defaults are in configs/base/blend.yaml, which says why each one is what it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from nemo_taskseed.config import section_settings
from nemo_taskseed.schema.plan import PlanError
from nemo_taskseed.schema.records import FORMATS


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
        if not 0.0 <= self.synthetic_share <= 1.0:
            raise PlanError(
                f"blend.synthetic_share must be in [0, 1] (0: the existing blend alone, a baseline), "
                f"got {self.synthetic_share}"
            )
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


@dataclass(frozen=True)
class VerifySettings:
    """`blend.verify` (configs/base/blend.yaml says what each key does)."""

    tolerance_absolute: float
    tolerance_relative: float
    build: str  # always | auto | never
    build_max_samples: int
    read_samples: int
    seed: int

    @classmethod
    def from_config(cls, cfg, **overrides) -> VerifySettings:
        values = {**section_settings(cls, cfg, "blend.verify"), **overrides}
        return cls(
            float(values["tolerance_absolute"]),
            float(values["tolerance_relative"]),
            str(values["build"]),
            int(values["build_max_samples"]),
            int(values["read_samples"]),
            int(values["seed"]),
        )
