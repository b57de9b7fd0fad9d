"""`taskseed blend plan` (token budget -> Megatron/Bridge/NeMo 2 data args) and `taskseed blend verify`."""

from __future__ import annotations

import json
from pathlib import Path

from nemo_taskseed.cli._overrides import add_deprecated_set, check_overrides, take_deprecated_sets


def register(subparsers) -> None:
    parser = subparsers.add_parser("blend", help="plan and verify the blend of synthetic and pretraining data")
    sub = parser.add_subparsers(dest="blend_command", required=True)

    plan = sub.add_parser(
        "plan", help="plan the token budget and write plan.json, data args, Bridge/NeMo 2 blocks, table, PNG"
    )
    plan.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. blend.group_quotas.reasoning=0.5 blend.max_epochs=8",
    )
    plan.add_argument("--manifest", default=None, help="tokenize output folder (or its manifest.json)")
    plan.add_argument("--out", required=True, help="folder for plan.json and the other artifacts")
    plan.add_argument(
        "--existing",
        default=None,
        help="existing pretraining blend: YAML/JSON (configs/blends/NAME) or a Megatron data-args file",
    )
    plan.add_argument("--total-tokens", type=float, default=None, help="token budget (default 100e9)")
    plan.add_argument("--synthetic-share", type=float, default=None, help="fraction of the budget that is synthetic")
    _common(plan)
    plan.set_defaults(func=_plan)

    verify = sub.add_parser(
        "verify", help="realized token shares per dataset from megatron-core (blending indices + a real build)"
    )
    verify.add_argument("plan", help="plan.json or the folder holding it")
    verify.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. blend.verify.tolerance_absolute=0.001"
    )
    verify.add_argument(
        "--build",
        choices=["always", "never", "auto"],
        default=None,
        help="always (default): a real BlendedMegatronDatasetBuilder build, a missing prefix is an "
        "error; never: the blending indices only (auto: old name of always)",
    )
    verify.add_argument("--out", default=None, help="where to write verify.json (default: beside plan.json)")
    _common(verify)
    verify.set_defaults(func=_verify)


def _common(parser) -> None:
    parser.add_argument("--config", default=None, help="config file (defaults: configs/base/blend.yaml)")
    add_deprecated_set(parser)


def _overrides(args) -> list[str]:
    return check_overrides(args.overrides) + take_deprecated_sets(f"blend {args.blend_command}", args.sets)


def _plan(args) -> int:
    from rich.console import Console

    from nemo_taskseed.blend.emit import print_table
    from nemo_taskseed.blend.planner import plan_from_config, write_plan
    from nemo_taskseed.config import load_config

    cfg = load_config(args.config, _overrides(args))
    section = cfg.blend
    if args.existing is not None:
        section.existing = args.existing
    if args.total_tokens is not None:
        section.total_tokens = int(args.total_tokens)
    if args.synthetic_share is not None:
        section.synthetic_share = args.synthetic_share
    plan = plan_from_config(section, args.manifest)
    written = write_plan(plan, Path(args.out), section)
    console = Console()
    print_table(plan, console)
    for note in plan.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(
        f"{len(plan['entries'])} datasets, {plan['total_tokens']:,} tokens, "
        f"{plan['total_samples']:,} samples of {plan['seq_length']} tokens"
    )
    for key, path in written.items():
        # soft_wrap: a path stays on one line (copyable), however narrow the terminal.
        console.print(f"  {key:>20}: {path}", soft_wrap=True)
    return 0


def _verify(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from nemo_taskseed.blend.planner import read_plan, verify_from_config
    from nemo_taskseed.blend.verify import failures
    from nemo_taskseed.config import load_config

    cfg = load_config(args.config, _overrides(args))
    if args.build:
        cfg.blend.verify.build = args.build
    plan, plan_path = read_plan(args.plan)
    report = verify_from_config(plan, cfg.blend)
    out = Path(args.out) if args.out else plan_path.parent
    out.mkdir(parents=True, exist_ok=True)
    (out / "verify.json").write_text(json.dumps(report, indent=2) + "\n")

    console = Console()
    table = Table(title=f"realized vs planned token share ({plan['seq_length']}-token samples)")
    for col in ("dataset", "planned", "indices", "build", "ok"):
        table.add_column(col, justify="left" if col == "dataset" else "right")
    build_rows = {r["name"]: r for r in (report["build"] or {}).get("rows", [])}
    for row in report["indices"]["rows"]:
        b = build_rows.get(row["name"])
        ok = row["ok"] and (b is None or b["ok"])
        table.add_row(
            row["name"],
            f"{row['planned_share']:.6f}",
            f"{row['realized_share']:.6f}",
            "-" if b is None else f"{b['realized_share']:.6f}",
            "yes" if ok else "[red]NO[/red]",
        )
    console.print(table)
    idx = report["indices"]
    console.print(f"blending indices: {idx['samples']:,} samples in {idx['seconds']:.2f} s")
    if report["build"]:
        b = report["build"]
        console.print(
            f"megatron-core build: {b['samples']:,} samples ({b['samples_read']} read back) in {b['seconds']:.2f} s"
        )
    elif report.get("build_skipped"):
        console.print(f"megatron-core build skipped: {report['build_skipped']}")
    problems = failures(report)
    for problem in problems:
        console.print(f"[red]{problem}[/red]")
    console.print(f"verify.json -> {out / 'verify.json'}: {'OK' if report['ok'] else 'FAILED'}", soft_wrap=True)
    return 0 if report["ok"] else 1
