"""`taskseed`: one thin CLI; each subcommand lives in its own module here and calls library code.

Modules listed in `SUBCOMMANDS` define `register(subparsers)`. The list is in pipeline order (`run`
first, which runs the stages after it), because `taskseed --help` lists subcommands in the order they
are registered. Every subcommand takes config overrides as positional `key=value` words.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

SUBCOMMANDS = [
    "run",  # the whole pipeline
    "preview",  # a few seeds through generate and filter, seed by seed
    "catalog",
    "seeds",
    "generate",
    "filter",
    "tokenize",
    "blend",  # its steps, in order
    "export",  # the curated records as a Hugging Face dataset
    "launch",
    "evaluate",
    "report",  # training and its evaluation
    "ablate",  # several runs compared
    "estimate",
    "model",
    "demo",
    "init",  # tools
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskseed",
        description="Task-seeded synthetic Q&A: lm-eval training splits -> enriched pretraining data -> NeMo.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show third-party INFO logs (vLLM, Ray, Curator) here; by default they go to "
        "taskseed.log in the output folder",
    )
    from nemo_taskseed.cli._overrides import OverridesParser

    # key=value overrides may follow the options too (argparse alone takes them only as one group).
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OverridesParser)
    for name in SUBCOMMANDS:
        importlib.import_module(f"nemo_taskseed.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from nemo_taskseed.errors import UserError

    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:
        # A real command line (not a test calling main([...])): engine and Ray processes this run
        # starts must not outlive it, even when it is killed -9 (pipeline/reaper.py).
        from nemo_taskseed.pipeline.reaper import start_reaper

        start_reaper()
    # Quiet terminal for a real command line; a test calling main([...]) keeps its own logging.
    args.quiet = argv is None and not args.verbose
    log_folder = _log_folder(args) if args.quiet else None
    if log_folder is not None:
        from nemo_taskseed.pipeline.logs import route_third_party_logs

        route_third_party_logs(log_folder)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"taskseed {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - only machine errors are reported here; the rest re-raise
        from nemo_taskseed.errors import environment_error

        what = environment_error(exc, getattr(args, "out", None))
        if what is None:
            raise
        print(
            f"taskseed {args.command}: error: {what}. Nothing finished before this point is lost: "
            "free space or fix the folder, then rerun to resume.",
            file=sys.stderr,
        )
        return 1


def _log_folder(args) -> Path | None:
    """The folder a step writes (`--out`; a file's folder); `taskseed run` routes logs itself (run.workdir)."""
    out = getattr(args, "out", None)
    if not out:
        return None
    out = Path(out)
    return out.parent if out.suffix else out


if __name__ == "__main__":
    sys.exit(main())
