"""`taskseed ablate plan|launch|report`: does the data help, and which part (docs/training.md, Ablations)."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table


def register(subparsers) -> None:
    parser = subparsers.add_parser("ablate", help="a set of continuation runs (arms): plan, launch, report")
    sub = parser.add_subparsers(dest="ablate_command", required=True)

    def common(p) -> None:
        p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. ablate.arms.share_sweep=[0.05]")
        p.add_argument("--config", default=None, help="config file (or name under configs/)")
        p.add_argument("--out", default=None, help="the ablation folder (ablate.out_dir)")

    plan = sub.add_parser("plan", help="plan and verify every arm's blend; print tokens and GPU-hours")
    common(plan)
    plan.add_argument("--manifest", default=None, help="tokenize folder of a finished run (ablate.manifest)")
    plan.set_defaults(func=_plan)

    launch = sub.add_parser("launch", help="every arm's run (NeMo-Run experiment, sbatch jobs, or here on CPU)")
    common(launch)
    launch.add_argument(
        "--backend",
        choices=["nemo_run", "sbatch", "local"],
        default=None,
        help="launch.backend; local: the CPU toy loop",
    )
    launch.add_argument("--dry-run", action="store_true", help="write every arm's spec and scripts, submit nothing")
    launch.add_argument(
        "--resubmit", action="append", default=[], metavar="ARM", help="submit this arm again (repeat for several)"
    )
    launch.set_defaults(func=_launch)

    report = sub.add_parser("report", help="every arm against the baseline: ablation.md, .csv, .png")
    common(report)
    report.add_argument("--baseline", default="baseline", help="the arm the others are compared with")
    report.set_defaults(func=_report)


def _config(args, extra: list[str] = ()):
    from nemo_taskseed.train.spec import load_train_config

    overrides = list(args.overrides) + list(extra)
    if args.out:
        overrides.append(f"ablate.out_dir={args.out}")
    return load_train_config(args.config, overrides), overrides


def _plan(args) -> int:
    from nemo_taskseed.ablate.plan import plan_arms

    cfg, _ = _config(args, [f"ablate.manifest={args.manifest}"] if args.manifest else [])
    console = Console()
    with console.status("planning and verifying the arms"):
        planned, notes, index = plan_arms(cfg)
    table = Table(title=f"ablation arms ({cfg.train.recipe}, {cfg.ablate.cost.mfu:.0%} MFU)", title_justify="left")
    for column in ("arm", "tokens", "synthetic", "GPU-hours", "verified"):
        table.add_column(column, justify="left" if column == "arm" else "right", no_wrap=True)
    for p in planned:
        share = p.synthetic_tokens / p.total_tokens if p.total_tokens else 0
        table.add_row(
            p.arm.name,
            f"{p.total_tokens:,}",
            f"{p.synthetic_tokens:,} ({share:.1%})",
            _hours(p.gpu_hours),
            "yes" if p.verified else "[red]NO[/red]",
        )
    console.print(table)
    if any(p.gpu_hours for p in planned):
        total = sum(p.gpu_hours or 0 for p in planned)
        console.print(
            f"all arms: {_hours(total)} GPU-hours ({cfg.ablate.cost.gpu_peak_tflops:g} TFLOPS peak per GPU, "
            f"6 x {float(cfg.train.model_params):.3g} parameters x tokens); what each arm changes: arms.json"
        )
    for note in notes:
        console.print(f"[bold yellow]WARNING[/] {note}", soft_wrap=True)
    console.print(f"arms.json -> {index}", soft_wrap=True)
    return 0 if all(p.verified for p in planned) else 1


def _hours(hours: float | None) -> str:
    if hours is None:
        return "-"
    return f"{hours:,.0f}" if hours >= 10 else f"{hours:.2g}"


def _launch(args) -> int:
    from nemo_taskseed.ablate.launch import STATE_FILE, launch_cluster, launch_local

    cfg, overrides = _config(args)
    backend = args.backend or str(cfg.launch.backend)
    if backend != "local":
        cfg.launch.backend = backend
        result = launch_cluster(
            cfg, args.config, overrides + [f"launch.backend={backend}"], dry_run=args.dry_run, resubmit=args.resubmit
        )
        print(json.dumps(result, indent=2))
        return 0
    console = Console()
    if args.dry_run:
        console.print("the local backend trains here: nothing to dry-run (use --backend nemo_run or sbatch)")
        return 2
    result = _launch_local_with_progress(cfg, launch_local)
    table = Table(title="ablation arms trained and scored here (CPU toy loop)", title_justify="left")
    for column in ("arm", "steps", "tokens", "scored now", "results"):
        # A path is copied from here: folded onto the next line when long, never cut.
        table.add_column(column, justify="right" if column in ("steps", "tokens") else "left", overflow="fold")
    for name, arm in result["arms"].items():
        scored = ", ".join(arm["scored_now"]) or "nothing new"
        table.add_row(name, str(arm["train_iters"]), f"{arm['total_tokens']:,}", scored, arm["results"])
    console.print(table)
    console.print(f"{STATE_FILE} -> {cfg.ablate.out_dir}/{STATE_FILE}; next: taskseed ablate report", soft_wrap=True)
    return 0


def _launch_local_with_progress(cfg, launch_local) -> dict:
    """The toy loop with a progress bar (one step per arm; the line says what runs)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nemo_taskseed.ablate.arms import read_index
    from nemo_taskseed.ablate.launch import selected_arms

    arms = selected_arms(cfg, read_index(cfg.ablate.out_dir))
    from nemo_taskseed.pipeline.logs import library_output_to_log

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # Training and lm-eval print their own bars on stderr: into taskseed.log, this bar on stdout.
    with Progress(*columns, console=Console(), transient=False) as progress, library_output_to_log():
        task = progress.add_task("arms", total=len(arms))
        done: set[str] = set()

        def update(line: str) -> None:
            arm = line.split(":", 1)[0]
            if done and arm not in done:
                progress.advance(task)
            done.add(arm)
            progress.update(task, description=line)

        result = launch_local(cfg, progress=update)
        progress.update(task, completed=len(arms), description="arms")
    return result


def _report(args) -> int:
    from pathlib import Path

    from nemo_taskseed.ablate.arms import read_index
    from nemo_taskseed.ablate.launch import read_state
    from nemo_taskseed.ablate.report import build_report
    from nemo_taskseed.config import to_container

    cfg, _ = _config(args)
    out_dir = Path(cfg.ablate.out_dir)
    state = read_state(out_dir)
    results = {name: entry["results"] for name, entry in state["arms"].items() if entry.get("results")}
    paths = build_report(
        read_index(out_dir),
        results,
        out_dir / "report",
        baseline=args.baseline,
        reference=to_container(cfg.ablate.reference_deltas) or {},
        z=float(cfg.ablate.z),
    )
    print(paths["markdown"].read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
