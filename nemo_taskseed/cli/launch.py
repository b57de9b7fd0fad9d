"""`taskseed launch train|pipeline`: submit continued pretraining or the data pipeline to Slurm."""

from __future__ import annotations

import json
import subprocess


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "launch", help="submit training (NeMo-Run/sbatch/torchrun) or the pipeline (Ray on Slurm)"
    )
    sub = parser.add_subparsers(dest="launch_command", required=True)

    train = sub.add_parser("train", help="continued pretraining on a blend plan (Megatron-Bridge or NeMo 2)")
    train.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. train.lr=2e-5 launch.nodes=8")
    train.add_argument("--config", default=None, help="config file (or name under configs/)")
    train.add_argument("--plan", default=None, help="plan.json from `taskseed blend plan` (train.plan)")
    train.add_argument("--recipe", default=None, help="model preset under configs/recipes/ (train.recipe)")
    train.add_argument("--framework", choices=["bridge", "nemo2"], default=None, help="train.framework")
    train.add_argument("--backend", choices=["nemo_run", "sbatch", "torchrun"], default=None, help="launch.backend")
    train.add_argument("--with-eval-watcher", action="store_true", help="also write/submit the eval watcher job")
    train.add_argument("--dry-run", action="store_true", help="write the spec and scripts, print them, submit nothing")
    train.set_defaults(func=_train)

    pipeline = sub.add_parser("pipeline", help="the data pipeline as a multi-node Ray job on Slurm")
    pipeline.add_argument("overrides", nargs="*", help="key=value overrides, e.g. launch.pipeline.nodes=4")
    pipeline.add_argument("--config", default=None, help="config file (its `run:` is what the job runs)")
    pipeline.add_argument("--dry-run", action="store_true", help="write and print the sbatch script, submit nothing")
    pipeline.set_defaults(func=_pipeline)


def _flag_overrides(args) -> list[str]:
    extra = []
    for flag, key in (
        ("plan", "train.plan"),
        ("recipe", "train.recipe"),
        ("framework", "train.framework"),
        ("backend", "launch.backend"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            extra.append(f"{key}={value}")
    return list(args.overrides) + extra


def _train(args) -> int:
    from nemo_taskseed.config import ConfigError
    from nemo_taskseed.launch.slurm import (
        sbatch_submit,
        submit_with_nemo_run,
        write_eval_watcher_sbatch,
        write_train_artifacts,
    )
    from nemo_taskseed.train.bridge import bridge_settings
    from nemo_taskseed.train.spec import build_spec, load_train_config

    cfg = load_train_config(args.config, _flag_overrides(args))
    spec = build_spec(cfg)
    backend = cfg.launch.backend
    if backend not in ("nemo_run", "sbatch", "torchrun"):
        raise ConfigError(f"launch.backend must be nemo_run, sbatch or torchrun, got {backend!r}")
    written = write_train_artifacts(spec, cfg)
    report = {
        "recipe": spec.recipe,
        "framework": spec.framework,
        "backend": backend,
        "train_iters": spec.train_iters,
        "total_tokens": spec.total_tokens,
        "seq_length": spec.seq_length,
        "global_batch_size": spec.global_batch_size,
        "warmup_iters": spec.warmup_iters,
        "nodes": spec.nodes,
        "gpus_per_node": spec.gpus_per_node,
        "data_parallel": spec.data_parallel,
        "data_path": spec.flat_data_path(),
        "pretrained_checkpoint": spec.pretrained_checkpoint,
        "checkpoint_dir": spec.checkpoint_dir,
        "tokenizer": spec.tokenizer,
        "plan_tokenizer": spec.plan_tokenizer,
        "files": {k: str(v) for k, v in written.items()},
    }
    if spec.framework == "bridge":
        report["bridge_recipe"] = spec.bridge_recipe
        report["bridge_settings"] = bridge_settings(spec)
    if args.with_eval_watcher:
        results = cfg.eval.results or f"{spec.output_dir}/eval/results.jsonl"
        report["files"]["eval_watcher"] = str(write_eval_watcher_sbatch(cfg, spec.checkpoint_dir, results))
    if backend == "nemo_run":
        result = submit_with_nemo_run(written["spec"], cfg, dry_run=args.dry_run)
        report["nemo_run"] = result
    elif not args.dry_run and backend == "sbatch":
        report["job_id"] = sbatch_submit(written["sbatch"])
    elif not args.dry_run and backend == "torchrun":
        print(json.dumps(report, indent=2))
        return subprocess.call(["bash", str(written["torchrun"])])
    if not args.dry_run and args.with_eval_watcher:
        report["eval_watcher_job_id"] = sbatch_submit(report["files"]["eval_watcher"])
    report["dry_run"] = bool(args.dry_run)
    print(json.dumps(report, indent=2))
    return 0


def _pipeline(args) -> int:
    from nemo_taskseed.config import load_config
    from nemo_taskseed.launch.slurm import sbatch_submit, write_pipeline_sbatch

    cfg = load_config(args.config, list(args.overrides))
    path = write_pipeline_sbatch(cfg, args.config)
    if args.dry_run:
        print(path.read_text())
        print(f"# written to {path} (dry run: not submitted)")
        return 0
    print(f"submitted pipeline job {sbatch_submit(path)} ({path})")
    return 0
