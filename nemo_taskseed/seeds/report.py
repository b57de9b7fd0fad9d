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
        table.add_row(task + aliases + ("" if info["complete"] else " [red](incomplete)[/red]"), str(info["kept"]), reasons)
    console.print(table)
    console.print(
        f"kept {summary['kept']}, rejected {summary['rejected']} "
        f"({', '.join(f'{k}: {v}' for k, v in summary['rejected_by_reason'].items()) or 'none'}); "
        f"{summary['resumed_subtasks']} subtask(s) already complete; {summary['seconds']} s"
    )
