"""The arms of an ablation: named variations of one base blend, each planned and verified exactly as
`taskseed blend plan` / `blend verify` do (blend/planner.py), with its cost before anything runs.

    baseline                 synthetic_share 0: the base blend's pretraining part alone
    all_synthetic            the base blend as configured (blend.synthetic_share)
    without_<key>_<value>    leave one group out (kind, format or family): the group's synthetic
                             tokens go to the pretraining part, every other group keeps its tokens
                             (so the arm's delta against all_synthetic is that group's contribution)
    share_<p>pct             the synthetic share swept (the pretraining part gives or takes the rest)
    microanneal              a short budget at a 50:50 mix (Olmo 3's microanneals)

Cost: training FLOPs ~ 6 x parameters x tokens, over the GPU peak and MFU of `ablate.cost`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nemo_taskseed.blend.sources import SyntheticPrefix
from nemo_taskseed.blend.units import format_fractions
from nemo_taskseed.config import ConfigError, to_container
from nemo_taskseed.schema.plan import PlanError

LEAVE_OUT_KEYS = ("kind", "format", "family")
# A prefix belongs to one format when at least this share of its tokens is of it (a family of
# multiple-choice items may hold a stray generative record; a real mix cannot be left out by format).
FORMAT_PURITY = 0.99


@dataclass(frozen=True)
class Arm:
    name: str
    what: str  # one line: what this arm changes from the base blend
    synthetic_share: float | None = None  # None: the base blend's
    total_tokens: int | None = None  # None: the base blend's
    leave_out: tuple[str, str] | None = None  # (key, value) of LEAVE_OUT_KEYS


@dataclass
class PlannedArm:
    arm: Arm
    plan_path: str
    total_tokens: int
    synthetic_tokens: int
    gpu_hours: float | None
    verified: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self.arm), **{k: v for k, v in asdict(self).items() if k != "arm"}}


def prefix_value(prefix: SyntheticPrefix, key: str) -> str:
    """The value of a leave-out key for one synthetic prefix."""
    if key == "kind":
        return prefix.kind
    if key == "family":
        return prefix.family
    if prefix.format:
        return prefix.format
    fractions = format_fractions(prefix) or {}
    dominant = max(fractions, key=fractions.get) if fractions else None
    if dominant is None or fractions[dominant] < FORMAT_PURITY:
        raise PlanError(
            f"prefix {prefix.name} mixes formats ({prefix.format_tokens or 'none recorded'}): it cannot be left "
            "out by format; tokenize with tokenize.group_by=[family,format,variant]"
        )
    return dominant


def _share_name(share: float) -> str:
    return "share_" + f"{100 * share:g}".replace(".", "p") + "pct"


def define_arms(arms_cfg: dict, prefixes: list[SyntheticPrefix]) -> list[Arm]:
    """The arms `ablate.arms` asks for, the leave-out ones for every value present in `prefixes`."""
    arms: list[Arm] = []
    if arms_cfg.get("baseline"):
        arms.append(Arm("baseline", "no synthetic data: the base blend's pretraining part alone", synthetic_share=0.0))
    if arms_cfg.get("all_synthetic"):
        arms.append(Arm("all_synthetic", "the base blend with all synthetic data"))
    for key in arms_cfg.get("leave_one_out") or []:
        if key not in LEAVE_OUT_KEYS:
            raise ConfigError(f"ablate.arms.leave_one_out: unknown key {key!r}; known: {', '.join(LEAVE_OUT_KEYS)}")
        values = sorted({prefix_value(p, key) for p in prefixes})
        if len(values) < 2:
            continue  # leaving out the only value is the baseline
        for value in values:
            arms.append(
                Arm(f"without_{key}_{value}", f"all synthetic data except {key} {value}", leave_out=(key, value))
            )
    for share in arms_cfg.get("share_sweep") or []:
        share = float(share)
        if not 0 < share <= 1:
            raise ConfigError(f"ablate.arms.share_sweep: {share} is not a share in (0, 1]")
        arms.append(Arm(_share_name(share), f"synthetic share {share:.1%} of the budget", synthetic_share=share))
    micro = arms_cfg.get("microanneal")
    if micro:
        share, tokens = float(micro["synthetic_share"]), int(micro["total_tokens"])
        arms.append(
            Arm("microanneal", f"microanneal: {tokens:,} tokens at {share:.0%} synthetic", share, total_tokens=tokens)
        )
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ConfigError(f"ablate.arms: two arms share a name: {names}")
    if not arms:
        raise ConfigError("ablate.arms: no arm is enabled")
    return arms


def gpu_hours(tokens: int, model_params: float | None, cost: dict) -> float | None:
    """GPU-hours of a run of `tokens` tokens: 6 x N x D FLOPs over peak x MFU (None without N)."""
    if not model_params:
        return None
    flops = 6.0 * float(model_params) * tokens
    return flops / (float(cost["gpu_peak_tflops"]) * 1e12 * float(cost["mfu"])) / 3600.0


def arm_section(
    blend: Any, arm: Arm, base_plan: dict | None, existing: Any, prefixes: list[SyntheticPrefix]
) -> tuple[Any, Any]:
    """The arm's `blend:` section and its synthetic-prefix selector (None: every prefix)."""
    section = OmegaConf.create(to_container(blend))
    section.existing = existing
    if arm.total_tokens is not None:
        section.total_tokens = arm.total_tokens
    if arm.synthetic_share is not None:
        section.synthetic_share = arm.synthetic_share
    if arm.leave_out is None:
        return section, None
    key, value = arm.leave_out
    assert base_plan is not None  # planned after the all-synthetic plan (plan.py)
    removed = _group_tokens(base_plan, key, value)
    section.synthetic_share = (base_plan["synthetic_tokens"] - removed) / base_plan["total_tokens"]

    def select(p: SyntheticPrefix) -> bool:
        return prefix_value(p, key) != value

    # Quotas of groups and formats the arm no longer has are dropped and the rest scaled to 1, so
    # every remaining group keeps (about) the tokens it had in the all-synthetic plan.
    kept = [p for p in prefixes if select(p)]
    for quotas, present in (
        ("group_quotas", {p.group for p in kept}),
        ("format_quotas", {f for p in kept for f in (format_fractions(p) or {})}),
    ):
        if section.get(quotas):
            left = {g: float(q) for g, q in to_container(section[quotas]).items() if g in present}
            section[quotas] = {g: q / sum(left.values()) for g, q in left.items()} if len(left) > 1 else {}
    return section, select


def _group_tokens(plan: dict, key: str, value: str) -> int:
    """Synthetic tokens the plan gives to one group (kind, family or format)."""
    if key == "format":  # a prefix's tokens per format, as the plan's format report sums them
        return int(((plan.get("formats") or {}).get("tokens") or {}).get(value, 0))
    return sum(int(e["tokens"]) for e in plan["entries"] if e["source"] == "synthetic" and e.get(key) == value)


def write_index(out_dir: Path, planned: list[PlannedArm], notes: list[str]) -> Path:
    path = Path(out_dir) / "arms.json"
    path.write_text(json.dumps({"arms": [p.to_dict() for p in planned], "notes": notes}, indent=2) + "\n")
    return path


def read_index(out_dir: Path) -> dict:
    path = Path(out_dir) / "arms.json"
    if not path.is_file():
        raise PlanError(f"{path} does not exist: run `taskseed ablate plan` first")
    return json.loads(path.read_text())
