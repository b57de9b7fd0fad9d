"""`taskseed export RUN --out DIR`: a finished run's curated records as a Hugging Face dataset folder."""

from __future__ import annotations

from nemo_taskseed.cli._overrides import check_overrides


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="a finished run's curated records as a Hugging Face dataset folder (parquet, card, license)",
        description="Write RUN's curated records to DIR as a dataset `datasets.load_dataset(DIR)` loads: parquet "
        "shards per format (configs default, multiple_choice, generative), a dataset card (README.md) made from "
        "the run, and the license its sources allow (docs/export.md).",
    )
    parser.add_argument("run", metavar="RUN", help="workdir of a finished `taskseed run` (e.g. runs/default)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. export.rows_per_shard=50000"
    )
    # dest is not `out`: the CLI would route third-party logs into a folder named `out` (cli/__init__.py),
    # and a log file has no place in a dataset folder that is uploaded as it is.
    parser.add_argument("--out", dest="dataset_dir", required=True, metavar="DIR", help="dataset folder to write")
    parser.add_argument(
        "--license-compatible-only",
        action="store_true",
        default=None,
        help="keep only records whose every source license is in catalog.compatible_licenses; the card lists "
        "what was left out and why",
    )
    parser.add_argument(
        "--push-to-hub",
        metavar="REPO",
        default=None,
        help="then upload DIR to the Hugging Face dataset repository REPO (needs a token: HF_TOKEN or `hf auth login`)",
    )
    parser.add_argument("--config", default=None, help="config file (defaults: configs/base/export.yaml)")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from pathlib import Path

    from rich.console import Console

    from nemo_taskseed.config import load_config
    from nemo_taskseed.export.step import export_run, push_to_hub

    cfg = load_config(args.config, check_overrides(args.overrides))
    result = export_run(args.run, Path(args.dataset_dir), cfg, license_compatible_only=args.license_compatible_only)
    console = Console()
    configs = ", ".join(f"{name} {n:,}" for name, n in result.configs.items())
    console.print(f"exported {result.stats.rows:,} records of {args.run} in {result.seconds:.1f} s: {configs}")
    license_ = result.decision.hub_license
    console.print(f"license: {license_ if isinstance(license_, str) else ', '.join(license_)}", soft_wrap=True)
    for problem in result.decision.problems:
        console.print(f"[bold yellow]WARNING[/] not cleared for release: {problem}", soft_wrap=True)
    if result.left_out.total:
        by_source = ", ".join(f"{s} {n:,}" for s, n in result.left_out.records.most_common())
        console.print(
            f"left out (--license-compatible-only): {result.left_out.total:,} records ({by_source})", soft_wrap=True
        )
    for shard in result.shards:
        console.print(f"  {shard.path} ({shard.rows:,} rows)", soft_wrap=True)
    # soft_wrap: paths are copied from here.
    console.print(f"card: {Path(args.dataset_dir) / 'README.md'}", soft_wrap=True)
    if args.push_to_hub:
        url = push_to_hub(Path(args.dataset_dir), args.push_to_hub, result.settings.hub)
        console.print(f"pushed to {url}", soft_wrap=True)
    return 0
