"""`taskseed run CONFIG [key=value ...]`: the whole pipeline, as far as `run.steps` goes."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run the pipeline steps of a config (e.g. configs/default.yaml)")
    p.add_argument("config", help="config file or name under configs/")
    p.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. run.workdir=/tmp/run seeds.max_per_subtask=50"
    )
    p.set_defaults(func=_run)


def _run(args) -> int:
    from nemo_taskseed.config import load_config
    from nemo_taskseed.run import run_pipeline

    cfg = load_config(args.config, args.overrides)
    if getattr(args, "quiet", False):
        from nemo_taskseed.pipeline.logs import route_third_party_logs

        route_third_party_logs(cfg.run.workdir)
    run_pipeline(cfg)
    return 0
