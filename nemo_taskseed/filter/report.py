"""Contamination report and per-family quality report (JSON + a short human summary)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import pandas as pd

from nemo_taskseed.filter.checks import checks_in_column, report_columns
from nemo_taskseed.filter.records import KEPT

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

AGREEMENT_BINS = [(0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.01)]
# An answer position whose share is further than this from uniform is flagged as unbalanced.
BALANCE_TOLERANCE = 0.1


def _position_counts(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Additive answer-position counts of multiple-choice records (letters and option counts)."""
    mc = [r for r in records if r.get("format") == "multiple_choice" and isinstance(r.get("answer_index"), int)]
    return {
        "n": len(mc),
        "counts": dict(Counter(LETTERS[r["answer_index"]] for r in mc if r["answer_index"] < len(LETTERS))),
        "n_options": dict(Counter(str(len(r.get("options") or [])) for r in mc)),
    }


def _position_histogram(counts: dict[str, Any]) -> dict[str, Any]:
    if not counts.get("n"):
        return {"n": 0, "counts": {}}
    n, letters = counts["n"], counts.get("counts", {})
    n_options = int(Counter(counts.get("n_options", {})).most_common(1)[0][0])
    shares = {LETTERS[i]: round(letters.get(LETTERS[i], 0) / n, 4) for i in range(n_options)}
    deviation = max(abs(s - 1 / n_options) for s in shares.values()) if n_options else 0.0
    return {
        "n": n,
        "counts": dict(sorted(letters.items())),
        "shares": shares,
        "max_deviation_from_uniform": round(deviation, 4),
        "balanced": deviation <= BALANCE_TOLERANCE,
    }


def family_counts(df: pd.DataFrame, records: list[Any]) -> dict[str, dict[str, Any]]:
    """One shard's contribution to the quality report, per family; every number adds up across
    shards. `records`: the rows' parsed records."""
    # A record "survived" a column when it was not rejected by any of its checks or an earlier one.
    columns = report_columns()
    stage_rank = {s: i for i, (_, stages) in enumerate(columns) for s in stages}
    by_family: dict[str, list] = defaultdict(list)
    for row, record in zip(df.itertuples(index=False), records):
        by_family[row.family].append((row, record))
    out: dict[str, dict[str, Any]] = {}
    for fam, pairs in by_family.items():
        rows = [r for r, _ in pairs]
        rank = [len(columns) if r.status == KEPT else stage_rank.get(r.stage, -1) for r in rows]
        entry: dict[str, Any] = {"generated": len(rows)}
        for i, (col, _) in enumerate(columns):
            entry[col] = sum(rk > i for rk in rank)
        entry["kept"] = sum(r.status == KEPT for r in rows)
        entry["rejected"] = dict(Counter(f"{r.stage}:{r.reason}" for r in rows if r.status != KEPT))
        records = [rec for _, rec in pairs if rec is not None]
        if any(r.get("format") == "multiple_choice" for r in records):
            entry["answer_positions"] = {
                "generated": _position_counts(records),
                "kept": _position_counts([rec for r, rec in pairs if r.status == KEPT]),
            }
        agreements = []
        for r in rows:
            if not r.annotations or r.annotations == "{}":
                continue
            ver = json.loads(r.annotations).get("verification") or {}
            if "agreement" in ver:
                agreements.append(float(ver["agreement"]))
        if agreements:
            entry["agreement"] = {
                "n": len(agreements),
                "sum": sum(agreements),
                "histogram": {
                    f"{lo:.1f}-{min(hi, 1.0):.1f}": sum(lo <= v < hi for v in agreements) for lo, hi in AGREEMENT_BINS
                },
            }
        out[fam] = entry
    return out


def quality_report(
    families: dict[str, dict[str, Any]], seeds_per_family: dict[str, int], stats: dict[str, Any]
) -> dict[str, Any]:
    """The report from the shards' merged `family_counts` and the seeds per family."""
    columns = [c for c, _ in report_columns()]
    fams: dict[str, dict[str, Any]] = {}
    for fam in sorted(set(families) | set(seeds_per_family)):
        entry = {
            "seeds_in": seeds_per_family.get(fam, 0),
            "generated": 0,
            **{c: 0 for c in columns},
            "kept": 0,
            **families.get(fam, {}),
        }
        entry["rejected"] = dict(Counter(entry.get("rejected", {})).most_common())
        if "answer_positions" in entry:
            entry["answer_positions"] = {k: _position_histogram(v) for k, v in entry["answer_positions"].items()}
        if "agreement" in entry:
            agr = entry["agreement"]
            entry["agreement"] = {"n": agr["n"], "mean": round(agr["sum"] / agr["n"], 4), "histogram": agr["histogram"]}
        fams[fam] = entry
    totals: dict[str, int] = Counter()
    for entry in fams.values():
        for key in ("seeds_in", "generated", *columns, "kept"):
            totals[key] += entry.get(key, 0)
    return {
        "columns": ["seeds_in", "generated", *columns, "kept"],
        "totals": dict(totals),
        "families": fams,
        "stages": stats,
    }


def human_summary(report: dict[str, Any]) -> str:
    cols = report["columns"]
    width = max([len("family"), *(len(f) for f in report["families"])]) + 2
    lines = ["filter: quality by family", "".join(["family".ljust(width), *(c.rjust(15) for c in cols)])]
    for fam, entry in report["families"].items():
        lines.append("".join([fam.ljust(width), *(str(entry.get(c, 0)).rjust(15) for c in cols)]))
    lines.append("".join(["TOTAL".ljust(width), *(str(report["totals"].get(c, 0)).rjust(15) for c in cols)]))
    stages = report.get("stages") or {}
    if stages:
        # One row per check, in pipeline order, including the ones that dropped nothing: a zero
        # is a finding too. A check that was switched off says so (and is named in the warnings).
        lines += ["", "filter: documents in / dropped per check (top reasons)"]
        name_width = max(len(s) for s in stages) + 2
        for stage, entry in stages.items():
            dropped = entry.get("dropped") or {}
            total = sum(dropped.values())
            top = ", ".join(f"{r} {n}" for r, n in Counter(dropped).most_common(3))
            if entry.get("off"):
                lines.append(f"{stage.ljust(name_width)}{'off'.rjust(16)}")
                continue
            lines.append(
                f"{stage.ljust(name_width)}{str(entry.get('in', 0)).rjust(8)}{str(total).rjust(8)}"
                + (f"   {top}" if top else "")
            )
    diversity = report.get("diversity") or {}
    if diversity:
        cols = [
            ("items", "items"),
            ("distinct_1", "distinct-1"),
            ("distinct_2", "distinct-2"),
            ("mean_nn_similarity", "NN sim"),
            ("mean_seed_similarity", "seed sim"),
            ("closer_to_other_seed", "other seed"),
        ]
        lines += [
            "",
            "filter: diversity and novelty of kept items (before verification; see diversity.png)",
            "".join(["family".ljust(width), *(label.rjust(12) for _, label in cols)]),
        ]
        for fam, entry in diversity.items():
            cells = ["-" if entry.get(key) is None else str(entry[key]) for key, _ in cols]
            cells[0] += "*" if entry.get("sampled") else ""
            lines.append("".join([fam.ljust(width), *(c.rjust(12) for c in cells)]))
        if any(entry.get("sampled") for entry in diversity.values()):
            lines.append(
                "* measured on a sample of this many items, chosen by id hash (filter.diversity.max_items_per_family)"
            )
    for fam, entry in report["families"].items():
        notes = []
        if entry.get("rejected"):
            top = ", ".join(f"{k} {v}" for k, v in list(entry["rejected"].items())[:3])
            notes.append(f"rejected: {top}")
        pos = (entry.get("answer_positions") or {}).get("kept") or {}
        if pos.get("n"):
            notes.append(f"answer positions {pos['counts']}{'' if pos['balanced'] else ' UNBALANCED'}")
        if (entry.get("agreement") or {}).get("n"):
            notes.append(f"vote agreement mean {entry['agreement']['mean']}")
        if notes:
            lines.append(f"  {fam}: " + "; ".join(notes))
    return "\n".join(lines)


def contamination_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """One shard's records dropped by decontamination, with the benchmark evidence."""
    decontam_checks = checks_in_column("decontaminated")
    rows = []
    for row in df.itertuples(index=False):
        if row.stage in decontam_checks and row.status != KEPT:
            rows.append(
                {
                    "id": row.id,
                    "seed_id": row.seed_id or None,
                    "family": row.family,
                    "stage": row.stage,
                    "reason": row.reason,
                    **json.loads(row.detail or "{}"),
                }
            )
        elif row.status == KEPT and row.annotations and "semantic_match" in row.annotations:
            # A pair in the review band that the judge or the band rule kept: still reported, with
            # both texts and the verdict.
            match = json.loads(row.annotations).get("semantic_match")
            if match:
                rows.append(
                    {
                        "id": row.id,
                        "seed_id": row.seed_id or None,
                        "family": row.family,
                        "stage": "semantic_decontam",
                        "reason": "kept_in_review",
                        **match,
                    }
                )
    return rows


def contamination_report(
    records: list[dict[str, Any]], seeds: list[dict[str, Any]], index: dict[str, Any]
) -> dict[str, Any]:
    """`records`: every shard's `contamination_rows`; `seeds`: contaminated seeds; `index`: the
    benchmark index's size and per-split coverage."""
    per_bench: dict[str, Counter] = defaultdict(Counter)
    verdicts: Counter = Counter()
    for r in records:
        if r.get("reason") == "kept_in_review":
            per_bench[r.get("benchmark", "?")]["records_kept_in_review"] += 1
        else:
            per_bench[r.get("benchmark", "?")]["records_dropped"] += 1
        if r.get("stage") == "semantic_decontam":
            verdicts[r.get("verdict", "?")] += 1
    semantic = index.get("semantic") or {}
    for s in seeds:
        per_bench[s.get("benchmark", "?")]["seeds_contaminated"] += 1
    coverage = index.get("coverage", [])
    return {
        "ngram_size_and_index": {k: index.get(k) for k in ("index_ngrams", "index_short_strings")},
        "totals_per_benchmark": {b: dict(c) for b, c in sorted(per_bench.items())},
        # Embedding retrieval: index size and model; verdicts of every flagged pair (records below
        # carry both texts and the score).
        "semantic": {
            "index_rows": semantic.get("rows"),
            "model": semantic.get("model"),
            "verdicts": dict(sorted(verdicts.items())),
        }
        if semantic
        else {},
        "records": records,
        "seeds": seeds,
        "coverage": coverage,
        "missing_splits": [f"{c['benchmark']} {c['split']} ({c['source']})" for c in coverage if not c.get("loaded")],
    }


def _quote(text: Any, limit: int = 600) -> str:
    text = " ".join(str(text or "").split())
    text = text if len(text) <= limit else text[:limit] + " ..."
    return "> " + text.replace("|", "\\|")


def contamination_markdown(report: dict[str, Any], limit: int = 500) -> str:
    """`contamination.md`: every flagged record a person can review, worst first (in the style of
    allenai/decon's reports): the benchmark row, the test text that matched, the item's window that
    matched it, the score and the verdict. Items are grouped (an item's variants share one match);
    at most `limit` items are written, the JSON report holds them all."""
    by_item: dict[tuple, dict[str, Any]] = {}
    for r in report.get("records", []):
        key = (r.get("stage"), r.get("benchmark"), r.get("split"), r.get("row"), r.get("item_text") or r.get("ngram"))
        entry = by_item.setdefault(key, {**r, "ids": []})
        entry["ids"].append(r.get("id"))

    def severity(r: dict[str, Any]) -> tuple:
        # n-gram overlaps first (verbatim text), then by score; pairs that were kept last.
        kept = r.get("reason") == "kept_in_review"
        return (kept, r.get("stage") != "decontam", -float(r.get("score") or r.get("n_matching_ngrams") or 0))

    entries = sorted(by_item.values(), key=severity)
    semantic = report.get("semantic") or {}
    lines = [
        "# Contamination report",
        "",
        f"{len(entries)} flagged items ({len(report.get('records', []))} records), "
        f"{len(report.get('seeds', []))} contaminated seeds. Worst first: n-gram overlaps, then embedding "
        "matches by score; pairs kept after review come last. Everything is also in contamination_report.json.",
        "",
    ]
    if semantic:
        lines += [
            f"Embedding index: {semantic.get('index_rows')} benchmark rows, model {semantic.get('model')}; "
            f"verdicts {semantic.get('verdicts')}.",
            "",
        ]
    totals = report.get("totals_per_benchmark") or {}
    if totals:
        lines += ["| benchmark | records dropped | kept after review | seeds contaminated |", "|---|---:|---:|---:|"]
        for bench, c in totals.items():
            lines.append(
                f"| {bench} | {c.get('records_dropped', 0)} | {c.get('records_kept_in_review', 0)} "
                f"| {c.get('seeds_contaminated', 0)} |"
            )
        lines.append("")
    for n, r in enumerate(entries[:limit], 1):
        where = f"{r.get('benchmark')} {r.get('split')} row {r.get('row')}"
        if r.get("stage") == "decontam":
            lines += [
                f"## {n}. n-gram overlap with {where}" + (f" ({r['view']})" if r.get("view") else ""),
                "",
                f"- records: {', '.join(map(str, r['ids'][:5]))}{' ...' if len(r['ids']) > 5 else ''} ({r.get('family')})",
                f"- {r.get('n_matching_ngrams')} matching n-grams; the first:",
                "",
                _quote(r.get("ngram")),
                "",
            ]
            continue
        verdict = r.get("verdict")
        lines += [
            f"## {n}. {verdict}: score {r.get('score')} against {where} ({r.get('benchmark_view', 'prompt')})",
            "",
            f"- records: {', '.join(map(str, r['ids'][:5]))}{' ...' if len(r['ids']) > 5 else ''} ({r.get('family')})",
            f"- levels: drop at {r.get('threshold')}, review from {r.get('review_threshold')}"
            + (f"; anchor share {r['anchor_share']}" if "anchor_share" in r else "")
            + (f"; judge said {r['judge_answer']!r}" if r.get("judge_answer") is not None else ""),
            f"- item window `{r.get('window', 'item')}`:",
            "",
            _quote(r.get("item_text")),
            "",
            "- benchmark text:",
            "",
            _quote(r.get("benchmark_text")),
            "",
        ]
    if len(entries) > limit:
        lines.append(f"... {len(entries) - limit} more items in contamination_report.json")
    return "\n".join(lines) + "\n"
