"""Human summary of a catalog build (rich tables on stderr-friendly console)."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from nemo_taskseed.catalog.build import CatalogResult

# What the paper reports (issue 14): ~70 task families, ~700 subtasks, ~3M knowledge-intensive and
# ~1.5M reasoning-intensive seeds. It gives no source, language or license counts.
PAPER = {"families": "~70", "subtasks": "~700", "knowledge : reasoning": "2 : 1 (3.0M : 1.5M seeds)"}


def paper_comparison(result: CatalogResult, compatible_licenses=None) -> dict:
    """The training-split catalog (declared training splits and overrides, no few-shot/dev splits)
    in the paper's terms: families, subtasks, distinct sources, kinds, languages, licenses."""
    rows = [r for r in result.eligible if r["split_role"] != "fewshot_split"]
    sources = [r for r in rows if r.get("canonical_task", r["task"]) == r["task"]]
    paths = {r["dataset_path"]: r["license"] for r in rows}
    compatible = {c.lower() for c in compatible_licenses or []}
    kept = [r for r in sources if r["license"].lower() in compatible]
    return {
        "families": len({r["family"] for r in rows}),
        "lm_eval_folders": len({r.get("folder", r["family"]) for r in rows}),
        "subtasks": len(rows),
        "distinct_sources": len(sources),
        "knowledge_sources": sum(r["kind"] == "knowledge" for r in sources),
        "reasoning_sources": sum(r["kind"] == "reasoning" for r in sources),
        "non_english_sources": sum(r.get("language", "en") != "en" for r in sources),
        "languages": len({r.get("language", "en") for r in sources}),
        "dataset_paths": len(paths),
        "dataset_paths_with_license": sum(v != "unknown" for v in paths.values()),
        "unknown_license_paths": sorted(p for p, v in paths.items() if v == "unknown"),
        "license_compatible_sources": len(kept),
        "license_compatible_families": len({r["family"] for r in kept}),
    }


def print_paper_comparison(result: CatalogResult, compatible_licenses=None, console: Console | None = None) -> dict:
    console = console or Console()
    c = paper_comparison(result, compatible_licenses)
    table = Table(title="training-split catalog vs the paper (docs/catalog.md)")
    table.add_column("")
    table.add_column("here", justify="right")
    table.add_column("paper", justify="right")
    pct = lambda n, d: f"{n:,} of {d:,} ({n / d:.0%})" if d else "0"  # noqa: E731
    table.add_row("capability families", f"{c['families']} ({c['lm_eval_folders']} lm-eval folders)", PAPER["families"])
    table.add_row("subtasks", f"{c['subtasks']:,}", PAPER["subtasks"])
    table.add_row("distinct sources (seed once)", f"{c['distinct_sources']:,}", "-")
    table.add_row(
        "knowledge : reasoning sources",
        f"{c['knowledge_sources']} : {c['reasoning_sources']}",
        PAPER["knowledge : reasoning"],
    )
    table.add_row(
        "non-English sources",
        pct(c["non_english_sources"], c["distinct_sources"]) + f", {c['languages']} languages",
        "-",
    )
    table.add_row("dataset paths with a license", pct(c["dataset_paths_with_license"], c["dataset_paths"]), "-")
    table.add_row(
        "license_compatible_only keeps",
        f"{c['license_compatible_sources']} sources in {c['license_compatible_families']} families",
        "-",
    )
    console.print(table)
    return c


def print_catalog_summary(
    result: CatalogResult, *, minimums=None, compatible_licenses=None, console: Console | None = None
) -> None:
    console = console or Console()
    counts = result.counts()
    declared = [r for r in result.eligible if r["split_role"] in ("training_split", "override")]
    table = Table(
        title=f"seed catalog ({'cache hit' if result.cache_hit else 'scanned lm-eval'}, {result.seconds:.1f} s)"
    )
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
    print_paper_comparison(result, compatible_licenses, console)
    top = Counter(r["family"] for r in result.eligible).most_common(8)
    console.print("largest families: " + ", ".join(f"{f} ({n})" for f, n in top))
    if minimums:
        if counts["eligible_families"] < minimums.get("families", 0) or counts["eligible_subtasks"] < minimums.get(
            "subtasks", 0
        ):
            console.print(
                f"[yellow]warning: fewer eligible families/subtasks than configured minimums "
                f"({minimums.get('families')} families, {minimums.get('subtasks')} subtasks)[/yellow]"
            )
