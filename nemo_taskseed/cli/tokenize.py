"""`taskseed tokenize`: curated JSONL -> Megatron .bin/.idx prefixes + manifest; `tokenize verify`."""

from __future__ import annotations

import sys
from pathlib import Path

from nemo_taskseed.cli._overrides import add_deprecated_set, take_deprecated_sets


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "tokenize",
        help="curated JSONL -> Megatron indexed datasets (.bin/.idx), one prefix per family/variant",
        description="Tokenize JSONL files (or every tokenize.input_glob file of --in DIR) into OUT. "
        "`taskseed tokenize verify OUT` re-checks a finished folder against its manifest.",
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        help="JSONL files, then key=value config overrides (e.g. tokenize.group_by=[family]); or `verify DIR`",
    )
    parser.add_argument("--in", dest="in_dir", default=None, help="tokenize every tokenize.input_glob file here")
    parser.add_argument("--out", default=None, help="output folder (prefixes, manifest.json, rejects.jsonl)")
    parser.add_argument("--config", default=None, help="config file (defaults: configs/base/tokenize.yaml)")
    parser.add_argument("--tokenizer", default=None, help="local Hugging Face tokenizer folder")
    parser.add_argument("--workers", type=int, default=None, help="encoder processes per shard (1 = in-process)")
    parser.add_argument(
        "--executor",
        default=None,
        choices=["inline", "ray_data", "xenna"],
        help="Curator executor for the per-file shards (default: tokenize.executor; inherit means inline here)",
    )
    parser.add_argument(
        "--no-merge",
        action="store_true",
        help="list the per-shard prefixes in the manifest instead of merging them (tokenize.merge=false)",
    )
    add_deprecated_set(parser)
    parser.set_defaults(func=_run)


def _split_overrides(tokens: list[str]) -> tuple[list[str], list[str]]:
    """argparse cannot tell positional inputs from key=value overrides: `=` decides."""
    inputs = [t for t in tokens if "=" not in t]
    overrides = [t for t in tokens if "=" in t]
    return inputs, overrides


def _run(args) -> int:
    from nemo_taskseed.config import load_config
    from nemo_taskseed.errors import UserError

    inputs, overrides = _split_overrides(list(args.inputs))
    overrides += take_deprecated_sets("tokenize", args.sets)
    if args.executor:
        overrides.append(f"tokenize.executor={args.executor}")
    if args.no_merge:
        overrides.append("tokenize.merge=false")
    if inputs[:1] == ["verify"]:
        return _verify(inputs[1:])
    cfg = load_config(args.config, overrides)
    if args.tokenizer:
        cfg.tokenize.tokenizer = args.tokenizer
    if args.out is None:
        raise UserError("--out is required")
    if args.in_dir and inputs:
        raise UserError("give JSONL files or --in DIR, not both")
    from nemo_taskseed.tokenize.step import TokenizeError, check_rejects, tokenize_inputs

    out_dir = Path(args.out)
    manifest, _ = tokenize_inputs(
        cfg.tokenize,
        out_dir,
        files=None if args.in_dir else inputs,
        in_dir=Path(args.in_dir) if args.in_dir else None,
        workers=args.workers,
    )
    _print_summary(manifest, out_dir)
    try:
        check_rejects(cfg.tokenize, manifest, out_dir)
    except TokenizeError as exc:  # the datasets are written: report, and fail the command
        print(exc, file=sys.stderr)
        return 1
    return 0


def _print_summary(manifest: dict, out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Megatron datasets in {out_dir} ({manifest['dtype']}, EOD={manifest['tokenizer']['eod_token_id']})"
    )
    for col in ("prefix", "kind", "documents", "tokens"):
        table.add_column(col, justify="right" if col in {"documents", "tokens"} else "left")
    for p in manifest["prefixes"]:
        table.add_row(p["name"], p["kind"], f"{p['documents']:,}", f"{p['tokens']:,}")
    console = Console(stderr=False)
    console.print(table)
    t = manifest["totals"]
    rate = t["tokens"] / t["seconds"] if t["seconds"] else 0.0
    console.print(
        f"{t['prefixes']} prefixes, {t['documents']:,} documents, {t['tokens']:,} tokens in {t['seconds']:.1f} s "
        f"({rate:,.0f} tokens/s); {t['rejected']} rejected lines"
        + (f" -> {out_dir / manifest['rejects_file']}" if manifest.get("rejects_file") else "")
    )


def _verify(folders: list[str]) -> int:
    from nemo_taskseed.errors import UserError
    from nemo_taskseed.tokenize.megatron import read_manifest, verify_prefixes

    if len(folders) != 1:
        raise UserError("usage: taskseed tokenize verify OUT_DIR")
    manifest, root = read_manifest(Path(folders[0]))
    problems = verify_prefixes(root, manifest)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(
        f"{len(manifest['prefixes'])} prefixes checked against {root / 'manifest.json'}: "
        f"{'OK' if not problems else f'{len(problems)} problem(s)'}"
    )
    return 1 if problems else 0
