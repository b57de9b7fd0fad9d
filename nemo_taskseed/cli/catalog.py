"""`taskseed catalog`: the eligible seed subtasks (and, with --excluded, every excluded one and why)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("catalog", help="build the seed catalog from the installed lm-eval-harness")
    p.add_argument("--config", default=None, help="config file (default: configs/base/*.yaml only)")
    p.add_argument("--out", default=None, help="write eligible subtasks as JSONL here")
    p.add_argument("--excluded", default=None, help="write excluded subtasks and their reasons as JSONL here")
    p.add_argument("--refresh", action="store_true", help="ignore the cache and rescan lm-eval")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. catalog.license_compatible_only=true")
    p.set_defaults(func=_catalog)


def _catalog(args) -> int:
    from nemo_taskseed.catalog import build_catalog
    from nemo_taskseed.catalog.report import print_catalog_summary
    from nemo_taskseed.config import load_config
    from nemo_taskseed.utils.jsonl import write_jsonl

    cfg = load_config(args.config, args.overrides)
    result = build_catalog(cfg.catalog, use_cache=not args.refresh)
    if args.out:
        write_jsonl(args.out, result.eligible)
    if args.excluded:
        write_jsonl(args.excluded, result.excluded)
    print_catalog_summary(
        result,
        minimums=cfg.catalog.get("minimums"),
        compatible_licenses=list(cfg.catalog.get("compatible_licenses") or []),
    )
    return 0
