"""The dataset card (README.md with the hub's YAML header) and LICENSE.md of an export, from the run.

Everything the card states is read from the run's own files (run_summary.json, the step summaries
and reports, the seeds, the records) or measured on the exported records; what the run did not
record is said to be unknown. Benchmark text is never copied into the card (the contamination
report holds test items; a card can itself end up in someone's pretraining crawl): only counts.
"""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemo_taskseed.export.dataset import COLUMN_DOCS, COLUMN_ORDER, FORMATS, config_globs, features

if TYPE_CHECKING:
    from nemo_taskseed.export.step import ExportResult

DROPS_CHART = "filter_drops.png"
DIVERSITY_CHART = "diversity.png"
LICENSE_FILE = "LICENSE.md"


def write_card(result: ExportResult, root: Path) -> None:
    """README.md, LICENSE.md and the charts the card links, into `root`."""
    from nemo_taskseed.utils.jsonl import write_text_atomic

    drops = _filter_drops(result)
    charts = {}
    if drops and _drops_chart(drops, root / DROPS_CHART):
        charts["drops"] = DROPS_CHART
    diversity = result.run.filter_dir / DIVERSITY_CHART
    if diversity.is_file():
        shutil.copyfile(diversity, root / DIVERSITY_CHART)
        charts["diversity"] = DIVERSITY_CHART
    license_text = "\n".join(_license_section(result))
    body = [
        *_intro(result),
        *_columns(),
        *_composition(result),
        license_text,
        *_models(result),
        *_seeds(result),
        *_filtering(result, drops, charts),
        *_contamination(result),
        *_diversity(result, charts),
        *_blend(result),
        *_provenance(result),
    ]
    write_text_atomic(root / "README.md", f"---\n{header_yaml(result)}---\n\n" + "\n".join(body).rstrip() + "\n")
    title = f"# License of {_title(result)}\n\n"
    write_text_atomic(root / LICENSE_FILE, title + license_text.split("\n", 1)[1].lstrip() + "\n")


# --- header ----------------------------------------------------------------------------------


def size_category(n: int) -> str:
    """The hub's size_categories bucket of `n` rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    bounds += [(10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B")]
    bounds += [(10**11, "10B<n<100B"), (10**12, "100B<n<1T")]
    for bound, name in bounds:
        if n < bound:
            return name
    return "n>1T"


def header(result: ExportResult) -> dict[str, Any]:
    """The YAML header as a dict (hub dataset card metadata)."""
    settings, stats, decision = result.settings, result.stats, result.decision
    meta: dict[str, Any] = {"license": decision.hub_license}
    if decision.hub_license == "other":
        meta["license_name"] = "taskseed-per-source-terms"
        meta["license_link"] = LICENSE_FILE
    languages = sorted(lang for lang in stats.per_language if lang and lang != "unknown")
    if languages:
        meta["language"] = languages
    categories: list[str] = []
    for fmt in FORMATS:
        if stats.per_config[fmt]:
            categories += [c for c in settings.task_categories.get(fmt) or [] if c not in categories]
    if categories:
        meta["task_categories"] = categories
    meta["size_categories"] = [size_category(stats.rows)]
    meta["pretty_name"] = _title(result)
    if settings.tags:
        meta["tags"] = list(settings.tags)
    globs = config_globs(result.configs)
    meta["configs"] = [
        {
            "config_name": name,
            **({"default": True} if name == "default" else {}),
            "data_files": [{"split": "train", "path": paths}],
        }
        for name, paths in globs.items()
    ]
    return meta


def header_yaml(result: ExportResult) -> str:
    import yaml

    return yaml.safe_dump(header(result), sort_keys=False, allow_unicode=True, width=1000)


def _title(result: ExportResult) -> str:
    return result.settings.pretty_name or f"taskseed synthetic Q&A: {result.run.workdir.resolve().name}"


# --- sections --------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[Any]], align: str = "") -> list[str]:
    def cell(value: Any) -> str:
        text = "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    align = align or "l" * len(headers)
    rule = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return out + [""]


def _intro(result: ExportResult) -> list[str]:
    stats = result.stats
    lines = [
        f"# {_title(result)}",
        "",
        f"{stats.rows:,} synthetic question-answer documents for language-model pretraining, made by "
        "nemo_taskseed from benchmark rows lm-eval does not score (training splits, or few-shot splits no task "
        "scores): each record is a new item a generator model wrote after one such row (its seed), checked and "
        "filtered, and "
        "rendered as one document variant (`text`). Every record keeps its lineage (seed, prompt template, model, "
        "sampling, raw model output).",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'ds = load_dataset("DATASET")                      # every record (config `default`)',
        'mc = load_dataset("DATASET", "multiple_choice")   # one format',
        'arc = ds["train"].filter(lambda r: r["family"] == "arc" and r["variant"] == "reasoning")',
        "```",
        "",
        "`DATASET` is this folder's path, or its hub repository.",
        "",
        "## Configs",
        "",
    ]
    globs = config_globs(result.configs)
    rows = [[f"`{name}`", n, ", ".join(f"`{g}`" for g in globs[name])] for name, n in result.configs.items()]
    lines += _table(["config", "records", "files"], rows, "lrl")
    lines += [
        "`default` holds every record; `multiple_choice` and `generative` hold the records of one format, like "
        "NVIDIA's two released synthetic sets. Within a config, records keep the order of the run's curated set "
        "(shard, then line); `default` lists the multiple-choice records first.",
        "",
    ]
    return lines


def _columns() -> list[str]:
    feats = features()
    rows = [[f"`{name}`", f"`{_type_name(feats[name])}`", COLUMN_DOCS.get(name, "")] for name in COLUMN_ORDER]
    lines = ["## Columns", ""]
    lines += _table(["column", "type", "what"], rows)
    lines += [
        "Filter on `family`, `variant`, `kind`, `format`, `language` and `source`. Every column has one fixed type in "
        "every file. A row is the run's curated record with three columns added (`language`, `source`, "
        "`source_config`); `verification` and `semantic_match` are JSON text because their shape depends on the check "
        'that wrote them; `extra` holds, as JSON `{"set": [[path, value], ...], "absent": [path, ...]}`, whatever '
        "of a record does not fit these types (null for records this version writes). "
        "`nemo_taskseed.export.dataset.row_to_record(row)` gives back the record exactly.",
        "",
    ]
    return lines


def _type_name(feature: Any) -> str:
    from datasets import Sequence, Value

    if isinstance(feature, Value):
        return feature.dtype
    if isinstance(feature, list):
        return f"list<{_type_name(feature[0])}>"
    if isinstance(feature, Sequence) or type(feature).__name__ == "List":
        return f"list<{_type_name(feature.feature)}>"
    if isinstance(feature, dict):
        return "struct"
    return type(feature).__name__


def _composition(result: ExportResult) -> list[str]:
    stats = result.stats
    variants = sorted({v for _, v in stats.family_variant})
    families = sorted({f for f, _ in stats.family_variant})
    rows = [
        [f]
        + [stats.family_variant.get((f, v), 0) for v in variants]
        + [sum(stats.family_variant.get((f, v), 0) for v in variants)]
        for f in families
    ]
    lines = ["## What is in it", "", "Records per family and variant:", ""]
    lines += _table(["family", *variants, "total"], rows, "l" + "r" * (len(variants) + 1))
    lines += ["By kind: " + ", ".join(f"{k} {n:,}" for k, n in sorted(stats.per_kind.items())) + ".  "]
    lines += ["By language: " + ", ".join(f"{k} {n:,}" for k, n in sorted(stats.per_language.items())) + ".", ""]
    if stats.untraced:
        lines += [
            f"{stats.untraced} records could not be traced to a source dataset (their seed is in neither the run's "
            "seeds nor its catalog): their `source` is null and their license counts as unknown.",
            "",
        ]
    return lines


def _license_section(result: ExportResult) -> list[str]:
    decision, stats = result.decision, result.stats
    hub = decision.hub_license if isinstance(decision.hub_license, str) else ", ".join(decision.hub_license)
    lines = ["## License", ""]
    lines += [f"**License: {hub}.** {decision.summary}.", ""]
    if not decision.cleared:
        lines += ["**Not cleared for release.** What stands in the way:", ""]
        lines += [f"- {p}" for p in decision.problems] + [""]
    lines += [
        "A generated item is an adaptation of its seed row (and of the few-shot example rows its prompt showed), so "
        "the terms of those datasets decide the license. The per-dataset licenses are the run's `catalog.licenses` "
        "(with where each claim comes from); the licenses that allow derivatives and redistribution are its "
        "`catalog.compatible_licenses` (" + ", ".join(sorted(_compatible(result))) + "). Check the claims before "
        "relying on them.",
        "",
    ]
    seeds_per_source: Counter = Counter()
    for (_, path, _), n in result.seeds_per_source.items():
        seeds_per_source[path or "unknown"] += n
    rows = []
    for name, terms in sorted(decision.sources.items()):
        rows.append(
            [
                name,
                terms.license,
                "yes" if terms.compatible else "**no**",
                "yes" if terms.share_alike else "no",
                stats.per_source[name],
                seeds_per_source.get(name, 0),
                terms.claim or "",
            ]
        )
    lines += _table(
        ["source", "license", "compatible", "share-alike", "records", "seeds", "where the license claim comes from"],
        rows,
        "lllrrrl",
    )
    for (source, said, table), n in sorted(stats.license_mismatch.items()):
        lines += [
            f"- {n} records of {source} carry license `{said}` (set at seeding) where the run's table says `{table}`; "
            "the table is what the license above follows.",
        ]
    if stats.license_mismatch:
        lines.append("")
    left = result.left_out
    compatible = sorted(_compatible(result))
    if result.settings.license_compatible_only:
        lines += ["### Left out (`--license-compatible-only`)", ""]
        if left.total:
            lines += [
                f"{left.total:,} records were left out: a source they came from does not allow derivatives and "
                "redistribution as far as the run's license table knows.",
                "",
            ]
            lines += _table(
                ["source", "license", "records", "why"],
                [[e["source"], e["license"], e["records"], e["reason"]] for e in left.as_dict(compatible)],
                "llrl",
            )
        else:
            lines += ["Nothing: every record's sources are compatible.", ""]
    elif not decision.cleared:
        lines += [
            "`taskseed export RUN --out DIR --license-compatible-only` keeps only the records whose every source is "
            "compatible, and lists here what it left out.",
            "",
        ]
    seeding = ((result.run.config.get("catalog") or {}).get("license_compatible_only")) is True
    lines += [
        f"At seeding, `catalog.license_compatible_only` was {'on' if seeding else 'off'}"
        + (
            ": only compatible datasets seeded."
            if seeding
            else ": datasets under any license except `catalog.deny_licenses` seeded."
        )
        + " The models' own terms (next section) may also restrict how their outputs are used.",
        "",
    ]
    return lines


def _compatible(result: ExportResult) -> set[str]:
    return {str(c).lower() for c in (result.run.config.get("catalog") or {}).get("compatible_licenses") or []}


def _models(result: ExportResult) -> list[str]:
    cfg = result.run.config
    lines = ["## Models", ""]
    rows = []
    counts = {
        "generator": result.stats.generator_models,
        "enrichment": result.stats.enrichment_models,
        "verifier": result.stats.verifier_models,
    }
    for role, models in result.models.items():
        by_model = Counter()
        for (model, _), n in counts[role].items():
            by_model[model] += n
        for m in models:
            rows.append([role, m.name, m.license, by_model.get(m.model, ""), m.evidence])
    verify = (cfg.get("filter") or {}).get("verify") or {}
    if not verify.get("enabled"):
        rows.append(
            ["verifier", "none", "", "", "verification was off (filter.verify.enabled=false): answers were not checked"]
        )
    elif not result.models.get("verifier"):
        rows.append(
            [
                "verifier",
                "the generator's backend",
                "",
                "",
                "filter.verify.backend and panel unset: the generator graded its own items",
            ]
        )
    lines += _table(["role", "model", "license", "records", "license from"], rows, "lllrl")
    methods = result.stats.verification_methods
    if methods:
        lines += ["Verification per record: " + ", ".join(f"{k} {n:,}" for k, n in sorted(methods.items())) + ".", ""]
    gen, enrich = (cfg.get("generate") or {}).get("sampling") or {}, (cfg.get("enrich") or {}).get("sampling") or {}
    if gen:
        lines += [f"Generation sampling: {_kv(gen)}.  "]
    if enrich and (cfg.get("enrich") or {}).get("enabled"):
        lines += [f"Enrichment sampling: {_kv(enrich)}."]
    lines.append("")
    return lines


def _kv(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


def _seeds(result: ExportResult) -> list[str]:
    records = result.stats.family_source
    rows = []
    for (family, path, config), n in sorted(result.seeds_per_source.items(), key=lambda kv: tuple(map(str, kv[0]))):
        rows.append(
            [family, path or "unknown", config or "", _license_of(result, path), n, records.get((family, path), 0)]
        )
    lines = ["## Seeds", "", "The benchmark rows the items were made from, per family and source dataset:", ""]
    lines += _table(["family", "source", "config", "license", "seeds", "records exported"], rows, "llllrr")
    seeds_summary = result.run.json_file("seeds", "summary.json") or {}
    if seeds_summary:
        lines += [
            f"The seeds step kept {seeds_summary.get('kept', 0):,} seeds of {seeds_summary.get('subtasks', 0)} subtasks "
            f"and rejected {seeds_summary.get('rejected', 0):,}"
            + (f" ({_kv(seeds_summary['rejected_by_reason'])})" if seeds_summary.get("rejected_by_reason") else "")
            + ".",
            "",
        ]
    return lines


def _license_of(result: ExportResult, path: str | None) -> str:
    from nemo_taskseed.export.license import LicenseRules

    return LicenseRules(result.run.config.get("catalog") or {}, []).of(path).license


def _filter_drops(result: ExportResult) -> dict[str, int]:
    summary = result.run.json_file("filter", "summary.json") or {}
    drops = summary.get("rejected_by_reason") or {}
    return {str(k): int(v) for k, v in drops.items() if v}


def _drops_chart(drops: dict[str, int], path: Path) -> bool:
    """Horizontal bars of the filter's drops per stage:reason; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    items = sorted(drops.items(), key=lambda kv: (kv[1], kv[0]))
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#4c72b0")
    for y, (_, v) in enumerate(items):
        ax.text(v, y, f" {v:,}", va="center", fontsize=8)
    ax.set_xlabel("records dropped")
    ax.set_title("filter: records dropped per stage:reason")
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _filtering(result: ExportResult, drops: dict[str, int], charts: dict[str, str]) -> list[str]:
    lines = ["## Filtering", ""]
    quality = result.run.json_file("filter", "quality_report.json") or {}
    totals, columns = quality.get("totals") or {}, quality.get("columns") or []
    if totals:
        lines += ["What each stage kept, over the whole run:", ""]
        lines += _table(columns, [[totals.get(c, "") for c in columns]], "r" * len(columns))
    if drops:
        lines += [f"Records the filter dropped, per stage and reason ({sum(drops.values()):,} in all):", ""]
        if "drops" in charts:
            lines += [f"![records dropped per reason]({charts['drops']})", ""]
        lines += _table(["stage:reason", "records"], sorted(drops.items(), key=lambda kv: (-kv[1], kv[0])), "lr")
    else:
        lines += ["The filter dropped nothing.", ""]
    generate = result.run.json_file("generate", "summary.json") or {}
    if generate.get("dropped"):
        lines += ["Before the filter, generation discarded model outputs it could not use:", ""]
        lines += _table(
            ["reason", "outputs"], sorted(generate["dropped"].items(), key=lambda kv: (-kv[1], kv[0])), "lr"
        )
    warnings = (result.run.json_file("filter", "summary.json") or {}).get("warnings") or []
    if warnings:
        lines += ["Warnings the filter step gave:", ""] + [f"- {w}" for w in warnings] + [""]
    return lines


def _contamination(result: ExportResult) -> list[str]:
    lines = ["## Contamination", ""]
    decontam = ((result.run.config.get("filter") or {}).get("decontam")) or {}
    report = result.run.json_file("filter", "contamination_report.json")
    if not decontam.get("enabled", True) or report is None:
        return lines + ["Decontamination was off in this run (filter.decontam.enabled=false): nothing was checked.", ""]
    coverage: dict[str, dict[str, Any]] = defaultdict(lambda: {"loaded": [], "missing": []})
    for entry in report.get("coverage") or []:
        coverage[entry.get("benchmark", "?")]["loaded" if entry.get("loaded") else "missing"].append(entry.get("split"))
    totals = report.get("totals_per_benchmark") or {}
    rows = []
    for bench in sorted(set(coverage) | set(totals)):
        c, t = coverage[bench], totals.get(bench) or {}
        rows.append(
            [
                bench,
                len(c["loaded"]),
                _first(c["missing"], 3),
                t.get("records_dropped", 0),
                t.get("records_kept_in_review", 0),
                t.get("seeds_contaminated", 0),
            ]
        )
    index = report.get("ngram_size_and_index") or {}
    how = (
        f"{decontam.get('ngram_size', '?')}-gram overlap ({_count_text(index.get('index_ngrams'))} indexed n-grams, "
        f"{_count_text(index.get('index_short_strings'))} short strings matched whole)"
    )
    semantic = report.get("semantic") or {}
    if semantic.get("model"):
        how += (
            f" and embedding similarity ({semantic['model']}, {_count_text(semantic.get('index_rows'))} benchmark "
            f"rows; verdicts: {_kv(semantic.get('verdicts') or {}) or 'none'})"
        )
    else:
        how += " only (the embedding check for paraphrases was off: filter.decontam.semantic.enabled=false)"
    lines += [
        f"Every generated item and every seed was checked against the scored splits of {len(rows)} benchmarks by "
        f"{how}. The items of a contaminated seed are dropped too.",
        "",
    ]
    lines += _table(
        ["benchmark", "splits checked", "splits missing", "records dropped", "kept after review", "seeds contaminated"],
        rows,
        "lrlrrr",
    )
    missing = sum(len(c["missing"]) for c in coverage.values())
    if missing:
        lines += [f"{missing} scored splits could not be loaded, so were not checked (`splits missing`).", ""]
    lines += [
        "Benchmark text is not reproduced here; the run's `filter/contamination_report.json` names every match "
        "and every split left unchecked.",
        "",
    ]
    return lines


def _first(names: list[Any], n: int) -> str:
    shown = ", ".join(map(str, names[:n]))
    return f"{shown} and {len(names) - n} more" if len(names) > n else shown


def _count_text(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _diversity(result: ExportResult, charts: dict[str, str]) -> list[str]:
    quality = result.run.json_file("filter", "quality_report.json") or {}
    diversity = quality.get("diversity") or {}
    lines = ["## Diversity", ""]
    if not diversity:
        return lines + ["Not measured in this run (filter.diversity.enabled=false).", ""]
    keys = ["items", "distinct_1", "distinct_2", "mean_nn_similarity", "mean_seed_similarity", "closer_to_other_seed"]
    rows = [[family] + [d.get(k, "") for k in keys] for family, d in sorted(diversity.items())]
    lines += [
        "Per family, over the items the filter kept before verification (embeddings of the question and options): "
        "distinct word 1- and 2-grams; mean cosine similarity to the nearest other item and to the item's own seed; "
        "share of items closer to another seed than to their own.",
        "",
    ]
    lines += _table(["family", *keys], rows, "l" + "r" * len(keys))
    if "diversity" in charts:
        lines += [f"![diversity per family]({charts['diversity']})", ""]
    return lines


def _blend(result: ExportResult) -> list[str]:
    plan = result.run.json_file("blend", "plan.json")
    lines = ["## Blend plan", ""]
    if plan is None:
        return lines + ["This run has no blend plan (no blend step).", ""]
    lines += [
        f"The run planned {plan.get('total_tokens', 0):,} training tokens in samples of {plan.get('seq_length')} "
        f"tokens, {float(plan.get('synthetic_share') or 0):.0%} of them synthetic "
        f"(existing pretraining blend: {plan.get('existing_blend', 'none')}). Planned share per tokenized dataset "
        "(the run's whole curated set):",
        "",
    ]
    rows = [
        [
            e.get("name"),
            e.get("source"),
            e.get("family"),
            e.get("variant"),
            e.get("kind"),
            e.get("tokens"),
            e.get("share"),
            e.get("epochs"),
        ]
        for e in plan.get("entries") or []
    ]
    lines += _table(["dataset", "source", "family", "variant", "kind", "tokens", "share", "epochs"], rows, "lllllrrr")
    notes = plan.get("notes") or []
    if notes:
        lines += [f"- {n}" for n in notes] + [""]
    return lines


def _provenance(result: ExportResult) -> list[str]:
    from importlib import metadata

    try:
        version = metadata.version("nemo_taskseed")
    except metadata.PackageNotFoundError:
        version = "unknown"
    steps = result.run.steps
    rows = [[name, s.get("seconds", "")] for name, s in steps.items() if isinstance(s, dict)]
    lines = [
        "## How it was made",
        "",
        f"`taskseed run` (nemo_taskseed {version}) with steps {', '.join(steps) or 'unknown'}; "
        f"exported with `taskseed export`"
        + (" --license-compatible-only" if result.settings.license_compatible_only else "")
        + ". The run's resolved config is in its `run_summary.json`.",
        "",
    ]
    lines += _table(["step", "seconds"], rows, "lr")
    if result.stats.with_extra:
        lines += [f"{result.stats.with_extra:,} rows have an `extra` column (fields outside the fixed types).", ""]
    return lines
