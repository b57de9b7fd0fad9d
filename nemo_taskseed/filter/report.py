"""Contamination report and per-family quality report (JSON + a short human summary)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import pandas as pd

from nemo_taskseed.filter.records import KEPT

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# Report columns, in pipeline order: a record "survived" a column when it was not rejected by
# any of its stages or an earlier one.
STAGE_COLUMNS = [("parsed", ("read", "schema")), ("deduped", ("exact_dedup", "fuzzy_dedup")),
                 ("decontaminated", ("decontam",)), ("verified", ("verify", "final_schema"))]
AGREEMENT_BINS = [(0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.01)]
# An answer position whose share is further than this from uniform is flagged as unbalanced.
BALANCE_TOLERANCE = 0.1


def _position_histogram(records: list[dict[str, Any]]) -> dict[str, Any]:
    mc = [r for r in records if r.get("format") == "multiple_choice" and isinstance(r.get("answer_index"), int)]
    counts = Counter(LETTERS[r["answer_index"]] for r in mc if r["answer_index"] < len(LETTERS))
    if not mc:
        return {"n": 0, "counts": {}}
    n_options = Counter(len(r.get("options") or []) for r in mc).most_common(1)[0][0]
    shares = {LETTERS[i]: round(counts.get(LETTERS[i], 0) / len(mc), 4) for i in range(n_options)}
    deviation = max(abs(s - 1 / n_options) for s in shares.values()) if n_options else 0.0
    return {"n": len(mc), "counts": dict(sorted(counts.items())), "shares": shares,
            "max_deviation_from_uniform": round(deviation, 4), "balanced": deviation <= BALANCE_TOLERANCE}


def _agreement(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    hist = {f"{lo:.1f}-{min(hi, 1.0):.1f}": sum(lo <= v < hi for v in values) for lo, hi in AGREEMENT_BINS}
    return {"n": len(values), "mean": round(sum(values) / len(values), 4), "histogram": hist}


def quality_report(
    df: pd.DataFrame, seeds: list[dict[str, Any]], stats: dict[str, Any], unparsed: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    unparsed = unparsed or []
    stage_rank = {s: i for i, (_, stages) in enumerate(STAGE_COLUMNS) for s in stages}
    fams: dict[str, dict[str, Any]] = defaultdict(lambda: {"seeds_in": 0, "generated": 0})
    for s in seeds:
        fams[str(s.get("family") or "unknown")]["seeds_in"] += 1
    for u in unparsed:
        fams[u.get("family") or "unknown"]["generated"] += 1
    by_family_rows: dict[str, list] = defaultdict(list)
    for row in df.itertuples(index=False):
        by_family_rows[row.family].append(row)
    for fam in set(fams) | set(by_family_rows):
        rows = by_family_rows.get(fam, [])
        entry = fams[fam]
        entry["generated"] += len(rows)
        rank = [len(STAGE_COLUMNS) if r.status == KEPT else stage_rank.get(r.stage, -1) for r in rows]
        for i, (col, _) in enumerate(STAGE_COLUMNS):
            entry[col] = sum(rk > i for rk in rank)
        kept_rows = [r for r in rows if r.status == KEPT]
        entry["kept"] = len(kept_rows)
        reasons = Counter(f"{r.stage}:{r.reason}" for r in rows if r.status != KEPT)
        reasons.update(f"read:{u['reason']}" for u in unparsed if (u.get("family") or "unknown") == fam)
        entry["rejected"] = dict(reasons.most_common())
        generated_records = [json.loads(r.record) for r in rows]
        kept_records = [json.loads(r.record) for r in kept_rows]
        if any(r.get("format") == "multiple_choice" for r in generated_records):
            entry["answer_positions"] = {"generated": _position_histogram(generated_records),
                                         "kept": _position_histogram(kept_records)}
        agreements = []
        for r in rows:
            ver = json.loads(r.annotations or "{}").get("verification") or {}
            if "agreement" in ver:
                agreements.append(float(ver["agreement"]))
        if agreements:
            entry["agreement"] = _agreement(agreements)
    totals: dict[str, int] = Counter()
    for entry in fams.values():
        for key in ("seeds_in", "generated", *(c for c, _ in STAGE_COLUMNS), "kept"):
            totals[key] += entry.get(key, 0)
    return {"columns": ["seeds_in", "generated", *(c for c, _ in STAGE_COLUMNS), "kept"],
            "totals": dict(totals), "families": dict(sorted(fams.items())), "stages": stats}


def human_summary(report: dict[str, Any]) -> str:
    cols = report["columns"]
    width = max([len("family"), *(len(f) for f in report["families"])]) + 2
    lines = ["filter: quality by family", "".join(["family".ljust(width), *(c.rjust(15) for c in cols)])]
    for fam, entry in report["families"].items():
        lines.append("".join([fam.ljust(width), *(str(entry.get(c, 0)).rjust(15) for c in cols)]))
    lines.append("".join(["TOTAL".ljust(width), *(str(report["totals"].get(c, 0)).rjust(15) for c in cols)]))
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


def contamination_report(df: pd.DataFrame, decontam_stats: dict[str, Any] | None) -> dict[str, Any]:
    decontam_stats = decontam_stats or {}
    dropped = []
    per_bench: dict[str, Counter] = defaultdict(Counter)
    for row in df.itertuples(index=False):
        if row.stage != "decontam" or row.status == KEPT:
            continue
        detail = json.loads(row.detail or "{}")
        dropped.append({"id": row.id, "seed_id": row.seed_id or None, "family": row.family, "reason": row.reason, **detail})
        per_bench[detail.get("benchmark", "?")]["records_dropped"] += 1
    seeds = decontam_stats.get("contaminated_seeds", [])
    for s in seeds:
        per_bench[s.get("benchmark", "?")]["seeds_contaminated"] += 1
    coverage = decontam_stats.get("coverage", [])
    return {
        "ngram_size_and_index": {k: decontam_stats.get(k) for k in ("index_ngrams", "index_short_strings")},
        "totals_per_benchmark": {b: dict(c) for b, c in sorted(per_bench.items())},
        "records": dropped,
        "seeds": seeds,
        "coverage": coverage,
        "missing_splits": [f"{c['benchmark']} {c['split']} ({c['source']})" for c in coverage if not c.get("loaded")],
    }
