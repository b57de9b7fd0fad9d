"""Config -> plan -> artifacts, and plan file -> megatron-core verification report."""

from __future__ import annotations

from pathlib import Path

from nemo_taskseed.blend.emit import write_artifacts
from nemo_taskseed.blend.plan import PlanSettings, plan_blend, resolve_existing
from nemo_taskseed.blend.sources import load_existing_blend, synthetic_prefixes_from_manifest
from nemo_taskseed.blend.verify import Tolerance, verify_plan
from nemo_taskseed.pipeline.lock import holds_output_lock
from nemo_taskseed.schema.plan import PlanError
from nemo_taskseed.schema.plan import read_plan as read_plan_file


def plan_from_config(section, manifest_path: str | Path | None = None) -> dict:
    """Plan the blend described by a `blend:` config section (manifest path may override it)."""
    from nemo_taskseed.tokenize.megatron import read_manifest

    manifest_path = manifest_path or section.get("manifest")
    if not manifest_path:
        raise PlanError("no tokenize manifest: pass --manifest DIR or set blend.manifest")
    manifest, root = read_manifest(Path(manifest_path))
    settings = PlanSettings.from_config(section)
    synthetic = synthetic_prefixes_from_manifest(
        manifest, root, settings.group_key, manifest_path=str(root / "manifest.json")
    )
    existing_name, existing = load_existing_blend(section.get("existing"))
    notes = []
    if not existing and settings.synthetic_share < 1.0:
        notes.append(
            f"no existing pretraining blend (blend.existing): synthetic-only plan, "
            f"synthetic_share {settings.synthetic_share:g} -> 1"
        )
        settings.synthetic_share = 1.0
    existing = resolve_existing(existing, settings)
    plan = plan_blend(synthetic, existing, settings, existing_name)
    plan["tokenizer"] = manifest["tokenizer"]
    plan["manifest"] = str((root / "manifest.json").resolve())
    plan["notes"] = notes + plan.get("notes", [])
    return plan


@holds_output_lock("blend", "out_dir")
def write_plan(plan: dict, out_dir: Path, section) -> dict[str, str]:
    return write_artifacts(
        plan,
        out_dir,
        valid=section.get("valid", "train"),
        test=section.get("test", "train"),
        plot=bool(section.get("plot", True)),
    )


def read_plan(path: str | Path) -> tuple[dict, Path]:
    """The plan `taskseed blend plan` wrote (schema tag and weights summing to 1 checked)."""
    return read_plan_file(path, written_by_blend=True)


def verify_from_config(plan: dict, section) -> dict:
    v = section.get("verify", {})
    tolerance = Tolerance(
        absolute=float(v.get("tolerance_absolute", 5e-4)), relative=float(v.get("tolerance_relative", 0.01))
    )
    tokenizer = (plan.get("tokenizer") or {}).get("path")
    return verify_plan(
        plan,
        tokenizer,
        tolerance=tolerance,
        build_max_samples=int(v.get("build_max_samples", 20000)),
        read_samples=int(v.get("read_samples", 64)),
        seed=int(v.get("seed", 1234)),
        build=str(v.get("build", "auto")),
    )
