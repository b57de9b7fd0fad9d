"""The filter step's reports: the shards' markers merged into the quality and contamination
reports, the human summary with its warnings, and `summary.json` (the published file set)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nemo_taskseed.filter.checks import check_warnings, checks_run, stage_order
from nemo_taskseed.filter.report import contamination_markdown, contamination_report, human_summary, quality_report
from nemo_taskseed.filter.settings import FilterSettings
from nemo_taskseed.llm.cost import stage_cost
from nemo_taskseed.pipeline import publish, shards
from nemo_taskseed.utils.jsonl import write_json, write_text_atomic


def merge_markers(markers: dict[str, dict], ran: set[str], screened: set[str], work: Path) -> dict[str, Any]:
    """The shards' per-check and per-family counts, contaminated records, usage, the requests of
    the shards this invocation ran (verify; the judge's from the screen pass's markers), nodes."""
    merged: dict[str, Any] = {"stages": {}, "families": {}, "records": [], "nodes": {}, "usage": {}, "requests": {}}
    merged.update(kept=0, rejected=0, files={})
    for shard, m in markers.items():
        merged["files"].update(publish.shard_files(work.parent, m, shard, ("curated", "rejected")))
        shards.add_counts(merged["usage"], m.get("usage") or {})
        if shard in ran:
            shards.add_counts(merged["requests"], m.get("requests") or {})
        if shard in screened:  # the judge's requests, from the screen pass's marker
            shards.add_counts(merged["requests"], (shards.read_marker(work, shard) or {}).get("requests") or {})
        shards.add_counts(merged["stages"], m["stages"])
        shards.add_counts(merged["families"], m["families"])
        merged["records"].extend(m["contaminated_records"])
        merged["kept"] += m["kept"]
        merged["rejected"] += m["rejected"]
        node = m["worker"]["node_id"]
        merged["nodes"][node] = merged["nodes"].get(node, 0) + 1
    return merged


def stage_table(settings: FilterSettings, merged_stages: dict[str, Any], index_info: dict[str, Any]) -> dict:
    """Per-check counts in pipeline order (not merge order); a check that is off says so."""
    stages = {stage: merged_stages[stage] for stage in stage_order() if stage in merged_stages}
    for stage, on in checks_run(settings).items():
        if not on and stage in stages:
            stages[stage]["off"] = True
    if "decontam" in stages and index_info:
        stages["decontam"].update(
            {
                "index_ngrams": index_info.get("index_ngrams"),
                "index_short_strings": index_info.get("index_short_strings"),
            }
        )
    if "semantic_decontam" in stages and index_info.get("semantic"):
        stages["semantic_decontam"]["index_rows"] = index_info["semantic"].get("rows")
    return stages


def data_warnings(settings: FilterSettings, contamination: dict, seeds_dir: Path | None) -> list[str]:
    """What changes the meaning of the kept data: a check that did not run, or ran on nothing
    (each check's own warnings, filter/checks.py), no seeds to compare with, a sandbox bound that
    cannot be enforced where code is checked."""
    warnings = check_warnings(settings, {"contamination": contamination})
    if seeds_dir is None:
        warnings.append("no seeds folder: generated items were not checked against their seeds")
    if settings.code is not None:  # a bound the code sandbox cannot enforce where it runs
        from nemo_taskseed.filter.verify.sandbox import sandbox_warnings

        warnings.extend(sandbox_warnings(settings.code))
    return warnings


def benchmark_lines(coverage: list[dict[str, Any]]) -> str:
    """The benchmarks decontamination checked, each with its scored splits loaded / missing."""
    if not coverage:
        return ""
    per: dict[str, dict[str, list[str]]] = {}
    for c in coverage:
        entry = per.setdefault(c["benchmark"], {"loaded": [], "missing": []})
        entry["loaded" if c.get("loaded") else "missing"].append(c["split"])
    lines = ["", f"decontamination: {len(per)} benchmarks checked (scored splits loaded / missing)"]
    width = max(len(b) for b in per) + 2
    for bench, entry in per.items():
        missing = (
            f"   missing: {', '.join(entry['missing'][:4])}{' ...' if len(entry['missing']) > 4 else ''}"
            if entry["missing"]
            else ""
        )
        lines.append(f"{bench.ljust(width)}{len(entry['loaded']):>4} / {len(entry['missing']):<4}{missing}".rstrip())
    return "\n".join(lines)


def write_reports(
    settings: FilterSettings,
    out_dir: Path,
    in_dir: Path,
    seeds_dir: Path | None,
    counts: dict[str, int],
    merged: dict[str, Any],
    resolved: Any,
    index_info: dict[str, Any],
) -> dict[str, Any]:
    """Write the reports and, last, `summary.json` (the published set); returns the summary with
    the human summary text. `counts`: total, seed_shards, screened_now, written_now."""
    stages = stage_table(settings, merged["stages"], index_info)
    quality = quality_report(merged["families"], resolved.seeds_per_family, stages)
    plot = None
    if resolved.diversity:
        from nemo_taskseed.filter.semantic.diversity import plot_diversity

        quality["diversity"] = resolved.diversity
        plot = plot_diversity(resolved.diversity, out_dir / "diversity.png")
    contamination = contamination_report(merged["records"], resolved.contaminated, index_info)
    warnings = data_warnings(settings, contamination, seeds_dir)
    quality["warnings"] = warnings
    write_json(out_dir / "contamination_report.json", contamination)
    write_text_atomic(out_dir / "contamination.md", contamination_markdown(contamination))
    write_json(out_dir / "quality_report.json", quality)
    summary = (
        human_summary(quality)
        + benchmark_lines(contamination["coverage"])
        + "".join(f"\nWARNING: {w}" for w in warnings)
    )
    write_text_atomic(out_dir / "quality_summary.txt", summary + "\n")
    reasons: dict[str, int] = {}
    for stage, entry in stages.items():
        for reason, n in entry.get("dropped", {}).items():
            if n:
                reasons[f"{stage}:{reason}"] = reasons.get(f"{stage}:{reason}", 0) + n
    kept, rejected = merged["kept"], merged["rejected"]
    result = {
        "in": kept + rejected,
        "kept": kept,
        "rejected": rejected,
        "rejected_by_reason": dict(sorted(reasons.items())),
        "contaminated_seeds": len(contamination["seeds"]),
        "missing_benchmark_splits": len(contamination["missing_splits"]),
        "warnings": warnings,
        "cost": {stage: stage_cost(u) for stage, u in merged["usage"].items() if u},
        # The model requests (verify; judge, when on) of the shards this invocation ran (a
        # resumed run shows what it sent, not what earlier runs did): sent, cached, refused.
        "requests": {stage: r for stage, r in merged["requests"].items() if r},
        "shards": {**counts, "by_node": dict(sorted(merged["nodes"].items()))},
        "outputs": {
            "curated": str(out_dir / "curated" / "part-*.jsonl"),
            "rejected": str(out_dir / "rejected" / "part-*.jsonl"),
            "contamination": str(out_dir / "contamination_report.json"),
            "contamination_review": str(out_dir / "contamination.md"),
            "quality": str(out_dir / "quality_report.json"),
        },
    }
    files = dict(merged["files"])
    for report in ("contamination_report.json", "contamination.md", "quality_report.json", "quality_summary.txt"):
        files[report] = publish.file_entry(out_dir / report)
    if plot is not None:
        files[plot.name] = publish.file_entry(plot)
        result["outputs"]["diversity_plot"] = str(plot)
    # The published set, written last (pipeline/publish.py): readers take exactly these files.
    result["files"] = dict(sorted(files.items()))
    result["inputs"] = publish.input_record(in_dir)  # a later generate run makes this set stale
    write_json(out_dir / "summary.json", result, sort_keys=True)
    result["summary"] = summary
    return result
