"""`taskseed ablate plan`: every arm's blend planned, written and verified as `blend plan` and `blend
verify` do it, with its tokens and GPU-hours, before anything is submitted.

    <out>/arms/<arm>/plan.json, data args, table, ...   `taskseed blend plan`'s files (blend/emit.py)
    <out>/arms/<arm>/verify.json                        `taskseed blend verify`'s report
    <out>/arms.json                                     the arms: what each changes, its plan, tokens,
                                                        GPU-hours, verified or not; what the launch
                                                        and the report read
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nemo_taskseed.ablate.arms import Arm, PlannedArm, arm_section, define_arms, gpu_hours, write_index
from nemo_taskseed.ablate.standin import STANDIN_NOTE, build_standin
from nemo_taskseed.blend.planner import plan_from_config, verify_from_config, write_plan
from nemo_taskseed.blend.sources import synthetic_prefixes_from_manifest
from nemo_taskseed.blend.verify import failures
from nemo_taskseed.config import ConfigError, to_container
from nemo_taskseed.tokenize.megatron import read_manifest


def manifest_path_of(cfg) -> Path:
    """`ablate.manifest`, else the tokenize folder of `run.workdir`."""
    return Path(cfg.ablate.manifest or Path(cfg.run.workdir) / "tokenize")


def _existing(cfg, tokenizer: str, arms: list[Arm]) -> tuple[Any, list[str]]:
    """The pretraining part every arm blends with: blend.existing, or the stand-in."""
    if cfg.blend.get("existing"):
        return cfg.blend.existing, []
    needs = [a.name for a in arms if a.synthetic_share is not None and a.synthetic_share < 1] + [
        a.name for a in arms if a.synthetic_share is None and float(cfg.blend.synthetic_share) < 1
    ]
    if not needs:
        return None, []
    if not cfg.ablate.standin:
        raise ConfigError(
            f"arms {sorted(set(needs))} blend synthetic data with a pretraining part, but blend.existing is not set "
            "and ablate.standin is false: give blend.existing (your pretraining blend) or turn the stand-in on"
        )
    return build_standin(cfg.tokenize, tokenizer), [STANDIN_NOTE]


def plan_arms(cfg, *, verify: bool = True) -> tuple[list[PlannedArm], list[str], Path]:
    """Plan (and verify) every arm of `cfg.ablate.arms`; returns them, the notes, and arms.json."""
    out_dir = Path(cfg.ablate.out_dir)
    manifest_path = manifest_path_of(cfg)
    manifest, root = read_manifest(manifest_path)
    prefixes = synthetic_prefixes_from_manifest(manifest, root, str(cfg.blend.group_key))
    arms = define_arms(to_container(cfg.ablate.arms), prefixes)
    existing, notes = _existing(cfg, manifest["tokenizer"]["path"], arms)
    base_section, _ = arm_section(cfg.blend, Arm("all_synthetic", ""), None, existing, prefixes)
    base_plan = plan_from_config(base_section, manifest_path)
    model_params = cfg.train.get("model_params")
    planned = []
    for arm in arms:
        section, select = arm_section(cfg.blend, arm, base_plan, existing, prefixes)
        plan = plan_from_config(section, manifest_path, select=select)
        arm_dir = out_dir / "arms" / arm.name
        written = write_plan(plan, arm_dir, section)
        ok = True
        if verify:
            report = verify_from_config(plan, section)
            (arm_dir / "verify.json").write_text(json.dumps(report, indent=2) + "\n")
            ok = bool(report["ok"])
            notes += [f"{arm.name}: {problem}" for problem in failures(report)]
        planned.append(
            PlannedArm(
                arm=arm,
                plan_path=str(Path(written["plan"]).resolve()),
                total_tokens=int(plan["total_tokens"]),
                synthetic_tokens=int(plan["synthetic_tokens"]),
                gpu_hours=gpu_hours(int(plan["total_tokens"]), model_params, to_container(cfg.ablate.cost)),
                verified=ok,
                notes=list(plan.get("notes", [])) + list(plan.get("warnings", [])),
            )
        )
    if not model_params:
        notes.append(f"train.model_params is not set for recipe {cfg.train.recipe!r}: no GPU-hours")
    return planned, notes, write_index(out_dir, planned, notes)
