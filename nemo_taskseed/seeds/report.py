"""Human summary of a seeds run: kept and rejected per subtask and per reason."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_seed_summary(summary: dict[str, Any], out_dir: str, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"seeds -> {out_dir}")
    table.add_column("subtask")
    table.add_column("kept", justify="right")
    table.add_column("rejected (reason: n)")
    for task, info in summary["per_task"].items():
        reasons = ", ".join(f"{k}: {v}" for k, v in info["rejected"].items()) or "-"
        # Subtasks on the same source seed once, as this one (catalog source_key).
        aliases = f" (also: {', '.join(info['aliases'])})" if info.get("aliases") else ""
        table.add_row(
            task + aliases + ("" if info["complete"] else " [red](incomplete)[/red]"), str(info["kept"]), reasons
        )
    console.print(table)
    console.print(
        f"kept {summary['kept']}, rejected {summary['rejected']} "
        f"({', '.join(f'{k}: {v}' for k, v in summary['rejected_by_reason'].items()) or 'none'}); "
        f"{summary['resumed_subtasks']} subtask(s) already complete; {summary['seconds']} s"
    )


def print_allocation(rows: list[dict[str, Any]], allocation: dict[str, Any], console: Console | None = None) -> None:
    """`taskseed seeds --plan`: seeds per kind, family and subtask, before any row is loaded."""
    console = console or Console()
    if not allocation["kinds"]:
        cap = next(iter(allocation["per_task"].values()), None)
        console.print(
            f"no seeds.targets: each of the {len(rows)} subtask(s) gives up to "
            f"{cap if cap is not None else 'all'} seeds (seeds.max_per_subtask)"
        )
        return
    kinds = Table(title="seed targets by kind")
    for col in ("kind", "target", "planned", "from few-shot splits"):
        kinds.add_column(col, justify="right" if col != "kind" else "left")
    for kind, info in allocation["kinds"].items():
        kinds.add_row(
            kind,
            "-" if info["target"] is None else f"{info['target']:,}",
            f"{info['seeds']:,}",
            f"{info['from_fewshot']:,}",
        )
    console.print(kinds)
    families = Table(title="by capability family")
    for col in ("family", "kind", "subtasks", "target", "planned", "from few-shot"):
        families.add_column(col, justify="left" if col in ("family", "kind") else "right")
    for family, info in sorted(allocation["families"].items(), key=lambda kv: -kv[1].get("seeds", 0)):
        families.add_row(
            family,
            info["kind"],
            str(info.get("subtasks", "")),
            "-" if info.get("target") is None else f"{info['target']:,}",
            f"{info.get('seeds', 0):,}",
            f"{info.get('from_fewshot', 0):,}",
        )
    console.print(families)
    sizes = allocation.get("sizes") or {}
    tasks = Table(title="by subtask")
    for col in ("subtask", "family", "split", "rows in split", "seeds"):
        tasks.add_column(col, justify="left" if col in ("subtask", "family", "split") else "right")
    for r in rows:
        size = sizes.get(r["task"])
        tasks.add_row(
            r["task"],
            r["family"],
            f"{r['split']} ({r['split_role']})",
            "?" if size is None else f"{size:,}",
            f"{allocation['per_task'][r['task']]:,}",
        )
    console.print(tasks)
    for note in allocation["notes"]:
        console.print(f"[yellow]{note}[/yellow]")
