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


class RequestError(ValueError):
    """A request file that cannot be submitted; the message names the file and the field."""


def read_request(path: str | Path) -> dict:
    """The request as {launch, out_dir, dry_run, experiment, tasks: [{name, spec, nodes, gpus_per_node,
    module, args}]}, checked before NeMo-Run is imported. A request names one run (`spec` +
    `command`: `taskseed launch train`) or several (`tasks`: `taskseed ablate launch`, one task per arm)."""
    path = Path(path)
    try:
        request = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RequestError(f"{path}: not a readable JSON request ({exc})") from exc
    missing = [k for k in ("launch", "out_dir", "dry_run") if k not in request]
    if missing:
        raise RequestError(f"{path}: missing field(s) {missing}")
    if "tasks" in request:
        entries = [(f"tasks[{i}]", t) for i, t in enumerate(request["tasks"])]
        if not entries:
            raise RequestError(f"{path}: tasks is empty")
    else:
        entries = [("", {"name": "train", "spec": request.get("spec"), "command": request.get("command")})]
    tasks = []
    for where, entry in entries:
        field = f"{where}." if where else ""
        for key in ("name", "spec", "command"):
            if not entry.get(key):
                raise RequestError(f"{path}: {field}{key} is missing")
        command = list(entry["command"])  # ["-m", "nemo_taskseed.recipes....", "--spec", ...]
        if len(command) < 2 or command[0] != "-m":
            raise RequestError(f"{path}: {field}command must start with -m MODULE, got {command[:2]}")
        try:
            spec = json.loads(Path(entry["spec"]).read_text())
        except (OSError, ValueError) as exc:
            raise RequestError(f"{path}: {field}spec {entry['spec']}: {exc}") from exc
        nodes, gpus = spec.get("nodes"), spec.get("gpus_per_node")
        if not isinstance(nodes, int) or not isinstance(gpus, int):
            raise RequestError(f"{path}: {field}spec {entry['spec']} names no nodes / gpus_per_node")
        tasks.append(
            {
                "name": str(entry["name"]),
                "spec": str(entry["spec"]),
                "nodes": nodes,
                "gpus_per_node": gpus,
                "module": command[1],
                "args": command[2:],
            }
        )
    names = [t["name"] for t in tasks]
    if len(set(names)) != len(names):
        raise RequestError(f"{path}: task names repeat: {names}")
    launch = dict(request["launch"])
    experiment = str(request.get("experiment") or f"{launch['job_name']}-train")
    return {
        "launch": launch,
        "out_dir": str(request["out_dir"]),
        "dry_run": bool(request["dry_run"]),
        "experiment": experiment,
        "tasks": tasks,
    }


def submit(request: dict) -> dict:
    """One NeMo-Run Experiment with every task, each on its own SlurmExecutor; a dry run writes the
    sbatch NeMo-Run would submit per task (`nemo_run_<name>.sbatch`). Writes and returns the result."""
    import nemo_run as run

    out_dir = Path(request["out_dir"])
    result: dict = {"dry_run": request["dry_run"], "experiment": request["experiment"], "tasks": {}}
    with run.Experiment(request["experiment"], base_dir=str(out_dir / "nemo_run_experiments"), log_level="WARN") as exp:
        for task in request["tasks"]:
            launch = dict(request["launch"], nodes=task["nodes"], gpus_per_node=task["gpus_per_node"])
            executor = build_executor(launch, str(out_dir))
            script = run.Script(path=task["module"], args=task["args"], entrypoint="python", m=True)
            exp.add(script, executor=executor, name=task["name"])
            result["tasks"][task["name"]] = {
                "executor": {
                    "account": executor.account,
                    "partition": executor.partition,
                    "nodes": executor.nodes,
                    "gpus_per_node": executor.gpus_per_node,
                    "time": executor.time,
                    "container_image": executor.container_image,
                    "container_mounts": executor.container_mounts,
                }
            }
        if request["dry_run"]:
            exp.dryrun(log=False)
            for task, job in zip(request["tasks"], exp.jobs, strict=True):
                sbatch = job._dryrun_info.request.materialize()  # no public accessor in nemo-run 0.11.1
                sbatch_path = out_dir / f"nemo_run_{task['name']}.sbatch"
                sbatch_path.write_text(sbatch)
                result["tasks"][task["name"]]["sbatch"] = str(sbatch_path)
        else:
            exp.run(detach=True)
            result["experiment_id"] = exp._id
    first = result["tasks"][request["tasks"][0]["name"]]
    # One run (`launch train`): its executor and sbatch at the top level, as before there were several.
    result.update(executor=first["executor"], **({"sbatch": first["sbatch"]} if "sbatch" in first else {}))
    (out_dir / "nemo_run_result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: nemo_run_submit.py REQUEST.json", file=sys.stderr)
        return 2
    try:
        request = read_request(argv[0])
    except RequestError as exc:
        print(f"nemo_run_submit: {exc}", file=sys.stderr)
        return 2
    submit(request)
    return 0


if __name__ == "__main__":
    sys.exit(main())
