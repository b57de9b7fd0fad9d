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
            "it comes from)."
        ),
    )
    parser.add_argument("run", metavar="RUN", help="a `taskseed run` workdir, or a `taskseed generate` output folder")
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

    from nemo_taskseed.llm.cost import format_projection, project, read_costs

    seeds, costs = read_costs(Path(args.run))
    projection = project(seeds, costs, args.seeds, args.gpu_tokens_per_s)
    print(json.dumps(projection, indent=2) if args.json else format_projection(projection))
    return 0
