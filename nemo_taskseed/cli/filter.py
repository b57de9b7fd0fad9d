"""`taskseed filter`: verify, dedup and decontaminate generated records (stage 5)."""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "filter",
        help="verify answers, dedup and decontaminate generated records (stage 5)",
        description="Read DIR/generated/part-*.jsonl (or DIR/generated*.jsonl), one shard per file, and write "
        "OUT/curated/part-<shard>.jsonl and OUT/rejected/part-<shard>.jsonl (each rejection with its "
        "reason), OUT/shards/<shard>.json (done markers), contamination_report.json, "
        "quality_report.json, quality_summary.txt and summary.json; intermediate files in OUT/work. "
        "A rerun skips finished shards. Defaults: configs/base/filter.yaml.",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. filter.verify.enabled=false filter.dedup.fuzzy.threshold=0.8",
    )
    parser.add_argument(
        "--in", dest="in_dir", required=True, help="the generate step's folder (generated/part-*.jsonl)"
    )
    parser.add_argument("--seeds", default=None, help="folder with seeds*.jsonl (dedup and decontamination of seeds)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--mirror",
        default=None,
        help="local benchmark mirror <root>/<dataset_path>/<config>/<split>.jsonl (sets filter.decontam.mirror)",
    )
    parser.add_argument("--config", default=None, help="config file merged over the defaults")
    parser.add_argument(
        "--executor",
        default=None,
        choices=["inline", "ray_data", "xenna"],
        help="how to run the Curator stages (default: filter.executor / run.executor)",
    )
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from nemo_taskseed.config import load_config
    from nemo_taskseed.errors import UserError
    from nemo_taskseed.filter.step import run_filter

    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise UserError(f"unexpected argument(s) {' '.join(bad)}: overrides must be key=value")
    overrides = list(args.overrides)
    if args.mirror:
        if not Path(args.mirror).is_dir():
            raise UserError(f"--mirror: folder not found: {args.mirror}")
        overrides.append(f"filter.decontam.mirror={Path(args.mirror).resolve()}")
    if args.executor:
        overrides.append(f"filter.executor={args.executor}")
    cfg = load_config(args.config, overrides)
    seeds = Path(args.seeds) if args.seeds else None
    if seeds is not None and not seeds.is_dir():
        raise UserError(f"--seeds: folder not found: {seeds}")
    result = run_filter(cfg, Path(args.in_dir), Path(args.out), seeds)
    print(result.pop("summary"))
    print(json.dumps(result, indent=2))
    return 0
