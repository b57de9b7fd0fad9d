"""`taskseed run CONFIG [key=value ...]`: the whole pipeline, as far as `run.steps` goes."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run the pipeline steps of a config (e.g. default, paper)")
    p.add_argument("config", help="config file, or a config name (the project's configs/, then the package's)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve and validate the whole config, print the steps, shards, models and GPUs it would use; "
        "load no model, write nothing",
    )
    p.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. run.workdir=/tmp/run seeds.max_per_subtask=50"
    )
    p.set_defaults(func=_run)


def _run(args) -> int:
    from nemo_taskseed.config import load_config, resolve_config_path

    cfg = load_config(args.config, args.overrides)
    if args.dry_run:
        from nemo_taskseed.dryrun import plan_dry_run

        plan = plan_dry_run(cfg)
        print(f"taskseed run {resolve_config_path(args.config)} (dry run: nothing loaded, nothing written)")
        for line in plan.lines():
            print(line)
        for error in plan.errors:
            print(f"error: {error}", file=sys.stderr)
        return 2 if plan.errors else 0
    if getattr(args, "quiet", False):
        from nemo_taskseed.pipeline.logs import route_third_party_logs

        route_third_party_logs(cfg.run.workdir)
    from nemo_taskseed.run import run_pipeline

    run_pipeline(cfg)
    return 0
