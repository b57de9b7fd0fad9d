"""Slurm launch artefacts: training spec, sbatch scripts from the packaged `launch/templates/`, torchrun for one node.

Everything here is plain Python + Jinja2 (runs in the main env). NeMo-Run submission lives in
`nemo_taskseed.launch.nemo_run_submit`, which needs nemo-run (its own env, see docs).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from nemo_taskseed.config import ConfigError, to_container
from nemo_taskseed.errors import UserError
from nemo_taskseed.paths import package_data
from nemo_taskseed.train.bridge import bridge_settings
from nemo_taskseed.train.spec import TrainingSpec

TEMPLATES_DIR = package_data("launch", "templates")
# The continued-pretraining entry points, run as modules of the installed package on the nodes.
RECIPE_MODULES = {
    "bridge": "nemo_taskseed.recipes.bridge_continued_pretraining",
    "nemo2": "nemo_taskseed.recipes.nemo2_continued_pretraining",
}
LAUNCH_BACKENDS = ("nemo_run", "sbatch", "torchrun")
_SLURM_TIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}:\d{2}$")


@dataclass
class SlurmResources:
    account: str | None
    partition: str | None
    qos: str | None
    nodes: int
    gpus_per_node: int
    cpus_per_task: int | None
    mem: str | None
    time: str
    container_image: str
    container_mounts: list[str]
    env: dict[str, str]
    job_name: str
    workdir: str | None
    package_dir: str | None

    @property
    def container_flags(self) -> str:
        """pyxis/enroot flags for srun."""
        flags = [f"--container-image={shlex.quote(self.container_image)}"]
        if self.container_mounts:
            flags.append(f"--container-mounts={shlex.quote(','.join(self.container_mounts))}")
        if self.workdir:
            flags.append(f"--container-workdir={shlex.quote(self.workdir)}")
        return " ".join(flags)


def slurm_resources(launch: DictConfig, *, nodes: int, gpus_per_node: int, time: str, job_name: str) -> SlurmResources:
    if not _SLURM_TIME.match(str(time)):
        raise ConfigError(f"Slurm time must look like HH:MM:SS or D-HH:MM:SS, got {time!r}")
    if nodes < 1 or gpus_per_node < 0:
        raise ConfigError(f"need nodes >= 1 and gpus_per_node >= 0, got {nodes}, {gpus_per_node}")
    mounts = [str(m) for m in launch.container_mounts]
    bad = [m for m in mounts if ":" not in m]
    if bad:
        raise ConfigError(f"launch.container_mounts entries must be host:container, got {bad}")
    return SlurmResources(
        account=launch.account,
        partition=launch.partition,
        qos=launch.qos,
        nodes=int(nodes),
        gpus_per_node=int(gpus_per_node),
        cpus_per_task=launch.cpus_per_task,
        mem=launch.mem,
        time=str(time),
        container_image=str(launch.container_image),
        container_mounts=mounts,
        env={str(k): str(v) for k, v in (to_container(launch.env) or {}).items()},
        job_name=str(job_name),
        workdir=str(launch.workdir) if launch.workdir else None,
        package_dir=str(launch.package_dir) if launch.package_dir else None,
    )


def render_template(name: str, **context) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,  # a missing value must fail here, not yield an empty flag
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = lambda v: shlex.quote(str(v))
    return env.get_template(name).render(**context)


def recipe_command(spec: TrainingSpec, spec_path: str) -> list[str]:
    """The per-rank command after `torchrun ...`: the recipe as a module of the installed package."""
    return ["-m", RECIPE_MODULES[spec.framework], "--spec", spec_path]


def job_folder(cfg: DictConfig, kind: str) -> Path:
    folder = Path(cfg.launch.job_dir) / f"{cfg.launch.job_name}-{kind}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_train_artifacts(spec: TrainingSpec, cfg: DictConfig) -> dict[str, Path]:
    """training_spec.json, the recipe's settings, a plain sbatch script and a one-node torchrun script."""
    folder = job_folder(cfg, "train")
    spec_path = spec.write(folder / "training_spec.json")
    # The job reads the spec where the job folder is visible; with containers, job_dir must be mounted.
    spec_in_job = str(spec_path.resolve())
    settings_path = folder / ("bridge_settings.json" if spec.framework == "bridge" else "nemo2_spec.json")
    payload = (
        {"bridge_recipe": spec.bridge_recipe, "settings": bridge_settings(spec)}
        if spec.framework == "bridge"
        else {"nemo2_recipe": spec.nemo2_recipe, "spec": spec.to_dict()}
    )
    settings_path.write_text(json.dumps(payload, indent=2) + "\n")
    resources = slurm_resources(
        cfg.launch,
        nodes=spec.nodes,
        gpus_per_node=spec.gpus_per_node,
        time=cfg.launch.time,
        job_name=f"{cfg.launch.job_name}-train",
    )
    command = recipe_command(spec, spec_in_job)
    sbatch = render_template(
        "train.sbatch.j2",
        r=resources,
        container_flags=resources.container_flags,
        spec=spec,
        command=command,
        log_dir=str(folder.resolve()),
        package_dir=resources.package_dir,
    )
    sbatch_path = folder / "train.sbatch"
    sbatch_path.write_text(sbatch)
    torchrun = render_template("torchrun_local.sh.j2", spec=spec, command=command)
    torchrun_path = folder / "torchrun_local.sh"
    torchrun_path.write_text(torchrun)
    torchrun_path.chmod(0o755)
    return {"spec": spec_path, "settings": settings_path, "sbatch": sbatch_path, "torchrun": torchrun_path}


def write_pipeline_sbatch(cfg: DictConfig, config_path: str | None) -> Path:
    p = cfg.launch.pipeline
    if p.generation not in ("vllm_serve", "vllm_inprocess"):
        raise ConfigError(f"launch.pipeline.generation must be vllm_serve or vllm_inprocess, got {p.generation!r}")
    if p.generation == "vllm_serve" and not p.model:
        raise ConfigError("launch.pipeline.generation=vllm_serve needs launch.pipeline.model (a model folder)")
    if int(p.gpus_per_node) % int(p.vllm_tensor_parallel):
        raise ConfigError(
            f"launch.pipeline.gpus_per_node={p.gpus_per_node} is not a multiple of vllm_tensor_parallel={p.vllm_tensor_parallel}"
        )
    resources = slurm_resources(
        cfg.launch,
        nodes=int(p.nodes),
        gpus_per_node=int(p.gpus_per_node),
        time=p.time,
        job_name=f"{cfg.launch.job_name}-pipeline",
    )
    folder = job_folder(cfg, "pipeline")
    script = render_template(
        "pipeline_ray.sbatch.j2",
        r=resources,
        container_flags=resources.container_flags,
        p=p,
        package_dir=resources.package_dir,
        run_config=str(config_path or p.run_config),
        run_overrides=[str(o) for o in p.run_overrides],
        log_dir=str(folder.resolve()),
    )
    path = folder / "pipeline_ray.sbatch"
    path.write_text(script)
    return path


def write_eval_watcher_sbatch(cfg: DictConfig, checkpoints: str, results: str) -> Path:
    w = cfg.launch.eval_watcher
    resources = slurm_resources(
        cfg.launch,
        nodes=int(w.nodes),
        gpus_per_node=int(w.gpus_per_node),
        time=w.time,
        job_name=f"{cfg.launch.job_name}-eval",
    )
    folder = job_folder(cfg, "eval")
    script = render_template(
        "eval_watcher.sbatch.j2",
        r=resources,
        container_flags=resources.container_flags,
        package_dir=resources.package_dir,
        checkpoints=checkpoints,
        results=results,
        baseline=w.baseline,
        config=w.config,
        overrides=[str(o) for o in w.overrides],
        log_dir=str(folder.resolve()),
    )
    path = folder / "eval_watcher.sbatch"
    path.write_text(script)
    return path


def nemo_run_python(cfg: DictConfig) -> str:
    """An interpreter that can `import nemo_run` (see launch.nemo_run_python)."""
    if cfg.launch.nemo_run_python:
        return str(cfg.launch.nemo_run_python)
    try:
        import nemo_run  # noqa: F401

        return sys.executable
    except ImportError:
        pass
    # A checkout's own launch environment (scripts/setup.sh makes it), found from the working folder.
    candidate = Path(".venv-launch") / "bin" / "python"
    if candidate.is_file():
        return str(candidate.resolve())
    raise UserError(
        "nemo-run is not importable here: install it next to taskseed (`pip install 'nemo_taskseed[launch]'`), "
        "point launch.nemo_run_python at a Python that has it (e.g. `python3.11 -m venv ~/nemo-run && "
        "~/nemo-run/bin/pip install nemo-run==0.11.1 'leptonai<0.47'`), or use launch.backend=sbatch"
    )


def submit_with_nemo_run(spec_path: Path, cfg: DictConfig, *, dry_run: bool) -> dict:
    """`taskseed launch train` through NeMo-Run: one run; returns nemo_run_submit's JSON report."""
    return submit_runs_with_nemo_run([("train", spec_path)], cfg, spec_path.parent, dry_run=dry_run)


def submit_runs_with_nemo_run(
    runs: list[tuple[str, Path]], cfg: DictConfig, folder: Path, *, dry_run: bool, experiment: str | None = None
) -> dict:
    """Several runs (name, training_spec.json) as one NeMo-Run Experiment, in the nemo-run
    interpreter (`nemo_taskseed.launch.nemo_run_submit`); returns its JSON report."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tasks = [
        {
            "name": name,
            "spec": str(Path(spec_path).resolve()),
            "command": recipe_command(TrainingSpec.read(spec_path), str(Path(spec_path).resolve())),
        }
        for name, spec_path in runs
    ]
    request = {
        "launch": to_container(cfg.launch),
        "out_dir": str(folder.resolve()),
        "dry_run": dry_run,
        "experiment": experiment or f"{cfg.launch.job_name}-train",
        "tasks": tasks,
    }
    request_path = folder / "nemo_run_request.json"
    request_path.write_text(json.dumps(request, indent=2) + "\n")
    # nemo_run_submit imports only the standard library and nemo_run, so the launch interpreter runs
    # it as a file: neither this package nor its dependencies need to be importable there.
    proc = subprocess.run(
        [nemo_run_python(cfg), str(package_data("launch", "nemo_run_submit.py")), str(request_path)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise UserError(f"NeMo-Run submission failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads((folder / "nemo_run_result.json").read_text())


def sbatch_submit(path: str | Path) -> str:
    """`sbatch --parsable PATH`; returns the job id."""
    if shutil.which("sbatch") is None:
        raise UserError(f"sbatch not found: submit {path} on a Slurm login node, or use --dry-run")
    return subprocess.run(
        ["sbatch", "--parsable", str(path)], check=True, capture_output=True, text=True
    ).stdout.strip()
