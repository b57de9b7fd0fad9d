"""`taskseed run` step: plan the blend from the tokenize manifest, write its artifacts, verify it."""

from __future__ import annotations

import json
from pathlib import Path

from nemo_taskseed.blend.planner import plan_from_config, verify_from_config, write_plan
from nemo_taskseed.blend.verify import VerifyError, failures


def run_step(cfg, in_dir: Path, out_dir: Path) -> dict:
    section = cfg.blend
    plan = plan_from_config(section, manifest_path=in_dir)
    written = write_plan(plan, out_dir, section)
    report = verify_from_config(plan, section)
    (Path(out_dir) / "verify.json").write_text(json.dumps(report, indent=2) + "\n")
    if not report["ok"]:
        raise VerifyError("realized blend outside tolerance:\n  " + "\n  ".join(failures(report)))
    return {
        "step": "blend",
        "out_dir": str(out_dir),
        "datasets": len(plan["entries"]),
        "synthetic_datasets": sum(e["source"] == "synthetic" for e in plan["entries"]),
        "total_tokens": plan["total_tokens"],
        "synthetic_tokens": plan["synthetic_tokens"],
        "total_samples": plan["total_samples"],
        "verified_samples": report["indices"]["samples"],
        "built_samples": (report["build"] or {}).get("samples", 0),
        "artifacts": sorted(Path(p).name for p in written.values()),
        "notes": plan.get("notes", []),
        # `taskseed run` prints these as WARNING lines: e.g. a relaxed or skipped format quota.
        "warnings": plan.get("warnings", []),
    }
