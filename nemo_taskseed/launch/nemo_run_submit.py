"""Submit (or dry-run) the training recipe through NeMo-Run's SlurmExecutor.

Runs in an interpreter with nemo-run 0.11.1 (`.venv-launch`; it cannot share the main env, see
README (Training)). Input: the request JSON written by `nemo_taskseed.launch.slurm`.
Output: `nemo_run_result.json` next to it and, for a dry run, the sbatch script NeMo-Run would
submit (`nemo_run_train.sbatch`). Imports nothing from the main env beyond the standard library.

    python <package>/launch/nemo_run_submit.py runs/launch/taskseed-train/nemo_run_request.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def build_executor(launch: dict, out_dir: str):
    import nemo_run as run

    executor = run.SlurmExecutor(
        account=launch["account"] or "",
        partition=launch["partition"],
        qos=launch.get("qos"),
        nodes=int(launch["nodes"]),
        ntasks_per_node=int(launch["gpus_per_node"]),
        gpus_per_node=int(launch["gpus_per_node"]),
        cpus_per_task=launch.get("cpus_per_task"),
        mem=launch.get("mem"),
        time=str(launch["time"]),
        container_image=launch["container_image"],
        container_mounts=list(launch.get("container_mounts") or []),
        # The recipe is a module of nemo_taskseed, installed in the image or (launch.package_dir) a
        # mounted `pip install --target` folder put on the path here.
        env_vars={
            **({"PYTHONPATH": launch["package_dir"]} if launch.get("package_dir") else {}),
            **{str(k): str(v) for k, v in (launch.get("env") or {}).items()},
        },
        job_name_prefix=f"{launch['job_name']}-",
        # The package is installed (image or launch.package_dir): nothing to package. The default
        # GitArchivePackager would also need the caller to sit in a git checkout.
        packager=run.Packager(),
        tunnel=run.LocalTunnel(job_dir=str(Path(out_dir) / "nemo_run_jobs")),
    )
    # torchrun per node; NeMo-Run then sets ntasks_per_node=1 and nproc-per-node=gpus.
    executor.launcher = "torchrun"
    return executor


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    request_path = Path(argv[0])
    request = json.loads(request_path.read_text())
    import nemo_run as run

    spec = json.loads(Path(request["spec"]).read_text())
    launch = dict(request["launch"], nodes=spec["nodes"], gpus_per_node=spec["gpus_per_node"])
    out_dir = request["out_dir"]
    executor = build_executor(launch, out_dir)
    flag, module, *script_args = request["command"]  # ["-m", "nemo_taskseed.recipes....", "--spec", ...]
    if flag != "-m":
        raise SystemExit(f"{request_path}: command must start with -m MODULE, got {request['command'][:2]}")
    task = run.Script(path=module, args=script_args, entrypoint="python", m=True)
    result = {
        "dry_run": request["dry_run"],
        "executor": {
            "account": executor.account,
            "partition": executor.partition,
            "nodes": executor.nodes,
            "gpus_per_node": executor.gpus_per_node,
            "time": executor.time,
            "container_image": executor.container_image,
            "container_mounts": executor.container_mounts,
        },
    }
    with run.Experiment(
        f"{launch['job_name']}-train",
        executor=executor,
        base_dir=str(Path(out_dir) / "nemo_run_experiments"),
        log_level="WARN",
    ) as exp:
        exp.add(task, name="train")
        if request["dry_run"]:
            exp.dryrun(log=False)
            sbatch = exp.jobs[0]._dryrun_info.request.materialize()  # no public accessor in 0.11.1
            sbatch_path = Path(out_dir) / "nemo_run_train.sbatch"
            sbatch_path.write_text(sbatch)
            result["sbatch"] = str(sbatch_path)
        else:
            exp.run(detach=True)
            result["experiment_id"] = exp._id
    (Path(out_dir) / "nemo_run_result.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
