"""Human summary of a catalog build (rich tables on stderr-friendly console)."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from nemo_taskseed.catalog.build import CatalogResult


def print_catalog_summary(result: CatalogResult, *, minimums=None, console: Console | None = None) -> None:
    console = console or Console()
    counts = result.counts()
    declared = [r for r in result.eligible if r["split_role"] in ("training_split", "override")]
    table = Table(title=f"seed catalog ({'cache hit' if result.cache_hit else 'scanned lm-eval'}, {result.seconds:.1f} s)")
    table.add_column("eligible by")
    table.add_column("value")
    table.add_column("subtasks", justify="right")
    for role, n in counts["by_split_role"].items():
        table.add_row("split role", role, str(n))
    for kind, n in counts["by_kind"].items():
        table.add_row("kind", kind, str(n))
    for fmt, n in counts["by_format"].items():
        table.add_row("format", fmt, str(n))
    # Every eligible subtask has an answer check derived from its lm-eval config (catalog/verifiers.py).
    for verifier, n in counts["by_verifier"].items():
        table.add_row("answer check", verifier, str(n))
    table.add_row("total", f"{counts['eligible_families']} families", str(counts["eligible_subtasks"]))
    table.add_row(
        "declared/override splits only",
        f"{len({r['family'] for r in declared})} families",
        str(len(declared)),
    )
    console.print(table)
    excluded = Table(title="excluded subtasks")
    excluded.add_column("reason")
    excluded.add_column("subtasks", justify="right")
    for reason, n in counts["excluded_by_reason"].items():
        excluded.add_row(reason, str(n))
    console.print(excluded)
    top = Counter(r["family"] for r in result.eligible).most_common(8)
    console.print("largest families: " + ", ".join(f"{f} ({n})" for f, n in top))
    if minimums:
        if counts["eligible_families"] < minimums.get("families", 0) or counts["eligible_subtasks"] < minimums.get("subtasks", 0):
            console.print(
                f"[yellow]warning: fewer eligible families/subtasks than configured minimums "
                f"({minimums.get('families')} families, {minimums.get('subtasks')} subtasks)[/yellow]"
            )
