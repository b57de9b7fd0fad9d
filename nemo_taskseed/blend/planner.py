"""The blend stage's driver: config -> plan -> artifacts, and plan file -> megatron-core verification report.

The one place that goes from the `blend` config section to files and back: `taskseed blend plan`
and `taskseed blend verify` (cli/blend.py) and the `blend` step of `taskseed run` (step.py) call
`plan_from_config`, `write_plan`, `read_plan` and `verify_from_config`. What they call is plain
logic or one kind of I/O each: sources.py reads the manifest and the existing blend, plan.py plans,
emit.py writes the artifacts, verify.py checks the realized blend.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nemo_taskseed.blend.emit import write_artifacts
from nemo_taskseed.blend.existing import resolve_existing
from nemo_taskseed.blend.plan import plan_blend
from nemo_taskseed.blend.settings import PlanSettings, VerifySettings
from nemo_taskseed.blend.sources import SyntheticPrefix, load_existing_blend, synthetic_prefixes_from_manifest
from nemo_taskseed.blend.verify import Tolerance, verify_plan
from nemo_taskseed.config import section_settings
from nemo_taskseed.pipeline.lock import holds_output_lock
from nemo_taskseed.schema.plan import PlanError
from nemo_taskseed.schema.plan import read_plan as read_plan_file


def plan_from_config(
    section, manifest_path: str | Path | None = None, *, select: Callable[[SyntheticPrefix], bool] | None = None
) -> dict:
    """Plan the blend described by a `blend:` config section (manifest path may override it).
    `select`: the synthetic prefixes to blend (all by default; `taskseed ablate` leaves groups out)."""
    from nemo_taskseed.tokenize.megatron import read_manifest

    manifest_path = manifest_path or section.get("manifest")
    if not manifest_path:
        raise PlanError("no tokenize manifest: pass --manifest DIR or set blend.manifest")
    manifest, root = read_manifest(Path(manifest_path))
    settings = PlanSettings.from_config(section)
    synthetic = synthetic_prefixes_from_manifest(
        manifest, root, settings.group_key, manifest_path=str(root / "manifest.json")
    )
    if select is not None:
        synthetic = [p for p in synthetic if select(p)]
    existing_name, existing = load_existing_blend(section.get("existing"))
    notes = []
    if not existing and settings.synthetic_share == 0:
        raise PlanError("blend.synthetic_share=0 plans the existing blend alone, but blend.existing is not set")
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
    emit = section_settings(None, section, "blend", ("valid", "test", "plot"))
    return write_artifacts(plan, out_dir, valid=emit["valid"], test=emit["test"], plot=bool(emit["plot"]))


def read_plan(path: str | Path) -> tuple[dict, Path]:
    """The plan `taskseed blend plan` wrote (schema tag and weights summing to 1 checked)."""
    return read_plan_file(path, written_by_blend=True)


def verify_from_config(plan: dict, section, **overrides) -> dict:
    """`verify_plan` with the settings of `section` (the `blend` section) `.verify`."""
    v = VerifySettings.from_config(section["verify"], **overrides)
    tokenizer = (plan.get("tokenizer") or {}).get("path")
    return verify_plan(
        plan,
        tokenizer,
        tolerance=Tolerance(absolute=v.tolerance_absolute, relative=v.tolerance_relative),
        build_max_samples=v.build_max_samples,
        read_samples=v.read_samples,
        seed=v.seed,
        build=v.build,
    )
