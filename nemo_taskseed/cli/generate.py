"""`taskseed generate`: similar-question generation and answer enrichment (stages 3 and 4)."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate new Q&A items from seeds and enrich their answers (vLLM or an OpenAI-compatible endpoint)",
        description=(
            "Reads DIR/seeds*.jsonl, cuts the seeds into shards (generate.shard_size per subtask) and writes "
            "per shard OUT/generated/part-<shard>.jsonl, OUT/rejected/part-<shard>.jsonl, the request cache "
            "OUT/cache/<shard>.*.sqlite and the done marker OUT/shards/<shard>.json; then OUT/summary.json. "
            "Re-running the same command resumes: finished shards are skipped, and inside the others finished "
            "requests are read from the shard's cache, only missing ones are sent. generate.executor=ray_data "
            "spreads shards over a Ray cluster (RAY_ADDRESS)."
        ),
    )
    parser.add_argument("--seeds", required=True, metavar="DIR", help="folder holding seeds*.jsonl")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (also holds the request cache)")
    parser.add_argument("--config", default=None, help="config file (default: configs/base/*.yaml only)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. generate.backend.kind=openai generate.sampling.n=2 enrich.variants=[label]",
    )
    parser.set_defaults(func=_generate)


def _generate(args) -> int:
    from pathlib import Path

    from nemo_taskseed.config import load_config
    from nemo_taskseed.generate.step import run_step

    cfg = load_config(args.config, args.overrides)
    summary = run_step(cfg, Path(args.seeds), Path(args.out))
    print(
        json.dumps(
            {k: summary[k] for k in ("seeds", "items_kept", "records_kept", "dropped", "requests", "shards", "cost")},
            indent=2,
        )
    )
    return 0
