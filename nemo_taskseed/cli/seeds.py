"""`taskseed seeds`: collect and normalize seeds for chosen subtasks through the Curator pipeline."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("seeds", help="collect training-split seeds and normalize them (Curator pipeline on Ray)")
    p.add_argument("--config", default=None, help="config file (default: configs/base/*.yaml only)")
    p.add_argument(
        "--mirror",
        default=None,
        help="local mirror root <root>/<dataset_path>/<config|default>/<split>.jsonl; omit for the HF hub",
    )
    p.add_argument(
        "--tasks", default=None, help="comma-separated task names, families or patterns (default: seeds.tasks)"
    )
    p.add_argument("--out", default=None, help="output folder: seeds.<task>.jsonl, rejected.jsonl, summary.json")
    p.add_argument(
        "--plan", action="store_true", help="print the seeds per kind/family/subtask (seeds.targets) and exit"
    )
    p.add_argument(
        "--max-per-subtask", type=int, default=None, help="cap rows per subtask (default: seeds.max_per_subtask)"
    )
    p.add_argument("--no-resume", action="store_true", help="redo subtasks already complete in --out")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    p.set_defaults(func=_seeds)


def _seeds(args) -> int:
    from omegaconf import OmegaConf

    from nemo_taskseed.catalog import load_catalog_rows
    from nemo_taskseed.config import load_config, to_container
    from nemo_taskseed.errors import UserError
    from nemo_taskseed.seeds import collect_seeds
    from nemo_taskseed.seeds.report import print_allocation, print_seed_summary
    from nemo_taskseed.seeds.targets import plan_rows

    cfg = load_config(args.config, args.overrides)
    if args.max_per_subtask is not None:
        cfg.seeds.max_per_subtask = args.max_per_subtask
    if args.no_resume:
        cfg.seeds.resume = False
    tasks = (
        [t.strip() for t in args.tasks.split(",") if t.strip()]
        if args.tasks
        else list(OmegaConf.to_container(cfg.seeds.tasks))
    )
    if not tasks:
        raise UserError("no tasks: pass --tasks t1,t2 or set seeds.tasks")
    rows = load_catalog_rows(cfg.catalog, tasks, dedup_sources=bool(cfg.seeds.dedup_sources))
    if args.plan:
        planned, allocation = plan_rows(rows, to_container(cfg.seeds), args.mirror or cfg.seeds.mirror)
        print_allocation(planned if allocation["kinds"] else rows, allocation)
        return 0
    if not args.out:
        raise UserError("--out is required (unless --plan)")
    summary = collect_seeds(rows, cfg.seeds, args.out, mirror=args.mirror, executor_name=cfg.run.executor)
    print_seed_summary(summary, args.out)
    return 0
