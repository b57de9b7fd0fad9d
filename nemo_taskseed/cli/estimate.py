"""`taskseed estimate`: project a full run's output tokens and GPU-hours from a finished run's measured rates."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "estimate",
        help="GPU-hours and output tokens of a full run, projected from a finished run's measured rates",
        description=(
            "Reads RUN/generate/summary.json (and RUN/filter/summary.json for verification, if present): the "
            "tokens per seed each model stage spent and, from a GPU run, its tokens/s per GPU. Prints, per stage, "
            "GPU-hours per 1M seeds and per 1B output tokens and the total for --seeds, with the arithmetic. "
            "A CPU run measures tokens per seed but no GPU rate: give one with --gpu-tokens-per-s (and say where "
            "it comes from). With no finished run, state both: --tokens-per-seed and --gpu-tokens-per-s."
        ),
    )
    parser.add_argument(
        "run",
        metavar="RUN",
        nargs="?",
        help="a `taskseed run` workdir, or a `taskseed generate` output folder (omit with --tokens-per-seed)",
    )
    parser.add_argument(
        "--tokens-per-seed",
        type=float,
        default=None,
        help="with no RUN: output tokens per seed of generation + enrichment, as you state it (e.g. from a pilot)",
    )
    parser.add_argument(
        "--verify-tokens-per-seed",
        type=float,
        default=None,
        help="with no RUN: output tokens per seed of answer verification (all voters together)",
    )
    parser.add_argument("--seeds", type=float, default=4.5e6, help="seeds of the full run (default: the paper's 4.5M)")
    parser.add_argument(
        "--gpu-tokens-per-s",
        type=float,
        default=None,
        help="output tokens/s per GPU to assume where the run measured none (e.g. a GPU bench)",
    )
    parser.add_argument("--json", action="store_true", help="print the projection as JSON")
    parser.set_defaults(func=_estimate)


def _estimate(args) -> int:
    from pathlib import Path

    from nemo_taskseed.errors import UserError
    from nemo_taskseed.llm.cost import format_projection, project, read_costs, stated_costs

    stated = args.tokens_per_seed is not None or args.verify_tokens_per_seed is not None
    if args.run and stated:
        raise UserError("give either RUN (measured rates) or --tokens-per-seed (stated), not both")
    if args.run:
        seeds, costs = read_costs(Path(args.run))
    else:
        seeds, costs = stated_costs({"generate": args.tokens_per_seed, "verify": args.verify_tokens_per_seed})
    projection = project(seeds, costs, args.seeds, args.gpu_tokens_per_s)
    if not args.run:
        projection["basis"] = "tokens per seed as stated (--tokens-per-seed), not measured"
    print(json.dumps(projection, indent=2) if args.json else format_projection(projection))
    return 0
