"""`taskseed ablate launch`: every arm's run from the same base checkpoint, with its eval hook.

Cluster backends (`launch.backend`): each arm is `taskseed launch train`'s run with its own plan,
output folder (`<train.output_dir>/<arm>`), job name (`<launch.job_name>-<arm>`) and eval results
(`<train.output_dir>/<arm>/eval/results.jsonl`, scored by its eval watcher job):

    nemo_run   all arms as one NeMo-Run Experiment (one task per arm, launch/nemo_run_submit.py)
    sbatch     one sbatch script per arm (launch/templates), each submitted
    --dry-run  every file written and every sbatch rendered (NeMo-Run: `Experiment.dryrun()`),
               nothing submitted

`local` (the CPU toy loop): each arm trains a tiny model on its blend here (cpu_train.py) and
its checkpoints are scored by the eval watcher's own code (evaluate/watcher.py) with the `eval:`
settings.

Resumable: `<ablate.out_dir>/launch.json` records what each arm was given. An arm that finished
(its last checkpoint is on disk) is never resubmitted; an arm submitted before is not submitted
again unless named by --resubmit (a job that failed).
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nemo_taskseed.ablate.arms import read_index
from nemo_taskseed.config import ConfigError
from nemo_taskseed.errors import UserError

STATE_FILE = "launch.json"


def read_state(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {"arms": {}}


def _write_state(out_dir: Path, state: dict[str, Any]) -> None:
    path = Path(out_dir) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


def selected_arms(cfg: DictConfig, index: dict) -> list[dict]:
    arms = index["arms"]
    wanted = cfg.ablate.get("launch_arms")
    if not wanted:
        return arms
    names = [a["name"] for a in arms]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ConfigError(f"ablate.launch_arms: unknown arm(s) {unknown}; planned: {names}")
    return [a for a in arms if a["name"] in wanted]


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# --- cluster ------------------------------------------------------------------------------------


def arm_config(config: str | None, overrides: list[str], arm: dict, output_dir: str, job_name: str) -> DictConfig:
    """The `launch train` config of one arm: its plan, output folder, job name and eval results
    (`output_dir`, `job_name`: the base config's, which every arm's are made from)."""
    from nemo_taskseed.train.spec import load_train_config

    out = f"{output_dir}/{arm['name']}"
    return load_train_config(
        config,
        [
            *overrides,
            f"train.plan={arm['plan_path']}",
            f"train.output_dir={out}",
            f"launch.job_name={job_name}-{arm['name']}",
            f"eval.results={out}/eval/results.jsonl",
            f"eval.run_name={arm['name']}",
        ],
    )


def _finished(spec) -> bool:
    return (Path(spec.checkpoint_dir) / f"iter_{spec.train_iters:07d}").is_dir()


def launch_cluster(
    cfg: DictConfig, config: str | None, overrides: list[str], *, dry_run: bool, resubmit: list[str]
) -> dict[str, Any]:
    """Write every arm's spec, scripts and eval watcher; submit (or dry-run) the ones not done."""
    from nemo_taskseed.launch.slurm import submit_runs_with_nemo_run, write_eval_watcher_sbatch, write_train_artifacts
    from nemo_taskseed.train.spec import build_spec

    backend = str(cfg.launch.backend)
    if backend not in ("nemo_run", "sbatch"):
        raise ConfigError(f"ablate launch: launch.backend must be nemo_run, sbatch or local, got {backend!r}")
    out_dir = Path(cfg.ablate.out_dir)
    index = read_index(out_dir)
    state = read_state(out_dir)
    runs, report = [], {}
    for arm in selected_arms(cfg, index):
        arm_cfg = arm_config(config, overrides, arm, str(cfg.train.output_dir), str(cfg.launch.job_name))
        spec = build_spec(arm_cfg)
        written = write_train_artifacts(spec, arm_cfg)
        watcher = write_eval_watcher_sbatch(arm_cfg, spec.checkpoint_dir, str(arm_cfg.eval.results))
        entry = {
            "spec": str(written["spec"]),
            "sbatch": str(written["sbatch"]),
            "eval_watcher": str(watcher),
            "results": str(arm_cfg.eval.results),
            "checkpoints": spec.checkpoint_dir,
            "train_iters": spec.train_iters,
            "total_tokens": spec.total_tokens,
        }
        previous = state["arms"].get(arm["name"], {})
        if _finished(spec):
            entry["action"] = "finished: not resubmitted"
        elif previous.get("submitted") and arm["name"] not in resubmit:
            entry["action"] = f"submitted {previous['submitted']}: not resubmitted (--resubmit {arm['name']})"
        else:
            entry["action"] = "dry run" if dry_run else "submit"
            runs.append((arm["name"], written["spec"], arm_cfg))
        report[arm["name"]] = {**previous, **entry}
    if runs and backend == "nemo_run":
        result = submit_runs_with_nemo_run(
            [(name, spec_path) for name, spec_path, _ in runs],
            cfg,
            out_dir / "nemo_run",
            dry_run=dry_run,
            experiment=f"{cfg.launch.job_name}-ablate",
        )
        for name, _, _ in runs:
            report[name]["nemo_run"] = result["tasks"][name]
            if not dry_run:
                report[name].update(submitted=_now(), experiment_id=result.get("experiment_id"))
    elif runs and not dry_run:
        from nemo_taskseed.launch.slurm import sbatch_submit

        for name, _, _ in runs:
            report[name].update(submitted=_now(), job_id=sbatch_submit(report[name]["sbatch"]))
            report[name]["eval_watcher_job_id"] = sbatch_submit(report[name]["eval_watcher"])
    if not dry_run:
        state["arms"].update(report)
        _write_state(out_dir, state)
    return {"backend": backend, "dry_run": dry_run, "arms": report}


# --- local (the CPU toy loop) -------------------------------------------------------------------


def launch_local(cfg: DictConfig, *, progress=None) -> dict[str, Any]:
    """Train every arm here and score its checkpoints; an arm already trained and scored is skipped."""
    from nemo_taskseed.ablate.cpu_train import CpuTrainSettings, train_on_plan
    from nemo_taskseed.evaluate.runner import evaluate_model
    from nemo_taskseed.evaluate.watcher import pending_checkpoints
    from nemo_taskseed.schema.plan import read_plan

    out_dir = Path(cfg.ablate.out_dir)
    index = read_index(out_dir)
    state = read_state(out_dir)
    settings = CpuTrainSettings.from_config(cfg)
    report = {}
    for arm in selected_arms(cfg, index):
        name = arm["name"]
        arm_dir = out_dir / "arms" / name
        plan, _ = read_plan(arm["plan_path"], written_by_blend=True)
        checkpoints = arm_dir / "checkpoints"
        results = arm_dir / "eval" / "results.jsonl"
        if progress:
            progress(f"{name}: training {settings.steps} steps")
        if not train_on_plan(plan, checkpoints, settings):
            raise UserError(f"arm {name}: training wrote no checkpoint under {checkpoints}")
        pending = pending_checkpoints(checkpoints, results)
        eval_cfg = _eval_config(cfg, name)
        for ckpt in pending:
            if progress:
                progress(f"{name}: scoring {ckpt.label}")
            evaluate_model(
                ckpt.model_dir, eval_cfg, results, label=ckpt.label, step=ckpt.step, checkpoint=str(ckpt.path)
            )
        report[name] = {
            "checkpoints": str(checkpoints),
            "results": str(results),
            "train_iters": settings.steps,
            "total_tokens": int(plan["total_tokens"]),
            "scored_now": [c.label for c in pending],
            "finished": _now(),
        }
    state["arms"].update(report)
    state["backend"] = "local"
    _write_state(out_dir, state)
    return {"backend": "local", "dry_run": False, "arms": report}


def _eval_config(cfg: DictConfig, arm: str) -> DictConfig:
    eval_cfg = cfg.eval.copy()
    eval_cfg.run_name = arm
    return eval_cfg
