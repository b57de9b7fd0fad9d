"""The preview's view: each seed, what generation made of it, and what the filter said, joined
from the steps' own output files (nothing is re-judged here).

    seeds/seeds.<task>.jsonl          the picked seeds, in view order
    generate/generated/part-*.jsonl   one record per kept item and variant: lineage.seed_id,
                                      lineage.item_id, lineage.sample_index, enrichment, text
    generate/rejected/part-*.jsonl    candidates dropped by generation (seed_id, sample_index,
                                      reason, raw_output) or enrichment (seed_id, item_id, variants)
    filter/curated/part-*.jsonl       records the filter kept (with `verification` when it ran)
    filter/rejected/part-*.jsonl      records it dropped: id, stage, reason, detail

The filter marks a record rejected at the first check that fails and later checks skip it, so
a dropped record has one recorded verdict: the checks before it (in the filter's stage order)
passed, the later ones are `not recorded`. A kept record passed every check that ran.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_taskseed.pipeline import publish, shards
from nemo_taskseed.utils.jsonl import read_jsonl

PASS, DROP, NOT_RECORDED, OFF = "pass", "drop", "not recorded", "off"


@dataclass
class Verdict:
    """One document (an item's variant) through the filter."""

    variant: str
    record_id: str | None
    kept: bool
    stage: str | None = None  # the check that dropped it (or `enrich` when it was never written)
    reason: str | None = None
    detail: Any = None
    checks: dict[str, str] = field(default_factory=dict)  # check -> pass / drop / not recorded / off
    annotations: dict[str, Any] = field(default_factory=dict)  # e.g. verification votes
    text: str = ""

    @property
    def written(self) -> bool:
        """Generation wrote this document (an enrichment failure leaves reasoning/context unwritten)."""
        return self.record_id is not None


@dataclass
class Candidate:
    """One sample of a seed's generation request: a new item, or why generation dropped it."""

    sample_index: int | None
    template: str | None
    item: dict[str, Any] | None = None  # question, context, options, answer_index, answer_text, ...
    item_id: str | None = None
    rejected: dict[str, Any] | None = None  # generation's rejected line (stage generate)
    enrichment: dict[str, Any] | None = None
    enrichment_rejected: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def kept_documents(self) -> int:
        return sum(v.kept for v in self.verdicts)


@dataclass
class SeedView:
    seed: dict[str, Any]
    candidates: list[Candidate]
    refused: list[dict[str, Any]] = field(default_factory=list)  # the whole request refused (no samples)

    @property
    def template(self) -> str | None:
        return next((c.template for c in self.candidates if c.template), None) or next(
            (r.get("template_id") for r in self.refused if r.get("template_id")), None
        )


@dataclass
class PreviewView:
    seeds: list[SeedView]
    checks: list[str]  # the filter's checks in stage order
    off: list[str]  # those this config turns off
    variants: list[str]
    templates: dict[str, dict[str, Any]]  # template id -> {version, file, edited}


def step_records(step_dir: Path, kind: str) -> list[dict[str, Any]]:
    """Every record of a step's `<kind>` parts: the set its summary published, else the parts."""
    files = publish.published_files(step_dir, kind)
    if files is None:
        files = shards.part_files(step_dir, kind)
    return [row for path in files for _, row in read_jsonl(path)]


def check_verdicts(checks: list[str], off: set[str], stage: str | None) -> dict[str, str]:
    """Each check's verdict for one record: `stage` is the check that dropped it (None: kept)."""
    out: dict[str, str] = {}
    reached = True
    for check in checks:
        if check in off:
            out[check] = OFF
        elif stage is None or (reached and check != stage):
            out[check] = PASS
        elif check == stage:
            out[check] = DROP
            reached = False
        else:
            out[check] = NOT_RECORDED
    return out


def build_view(
    seeds: list[dict[str, Any]], out: Path, cfg: Any, templates: dict[str, dict[str, Any]] | None = None
) -> PreviewView:
    """Join the picked seeds with the generate and filter folders under `out`."""
    from nemo_taskseed.config import to_container
    from nemo_taskseed.filter.checks import checks_run, stage_order
    from nemo_taskseed.filter.settings import FilterSettings

    full = to_container(cfg)
    on = checks_run(FilterSettings.from_config(full))
    checks = [s for s in stage_order() if s in on]
    off = {s for s, enabled in on.items() if not enabled}
    variants = list(full["enrich"]["variants"])

    generated = step_records(out / "generate", "generated")
    gen_rejected = step_records(out / "generate", "rejected")
    kept = {r["id"]: r for r in step_records(out / "filter", "curated")}
    dropped = {r["id"]: r for r in step_records(out / "filter", "rejected") if r.get("id")}

    records_by_item: dict[str, list[dict[str, Any]]] = {}
    for r in generated:
        records_by_item.setdefault(r["lineage"]["item_id"], []).append(r)
    enrich_failures: dict[str, list[dict[str, Any]]] = {}
    by_sample: dict[tuple[str, int], dict[str, Any]] = {}
    refused: dict[str, list[dict[str, Any]]] = {}
    for r in gen_rejected:
        if r.get("stage") == "enrich":
            enrich_failures.setdefault(r.get("item_id") or "", []).append(r)
        elif r.get("sample_index") is not None:
            by_sample[(r.get("seed_id") or "", int(r["sample_index"]))] = r
        else:
            refused.setdefault(r.get("seed_id") or "", []).append(r)

    views = []
    for seed in seeds:
        candidates: dict[int, Candidate] = {}
        for item_id, records in records_by_item.items():
            lineage = records[0]["lineage"]
            if lineage["seed_id"] != seed["id"]:
                continue
            index = int(lineage.get("sample_index") or 0)
            first = records[0]
            candidate = Candidate(
                sample_index=index,
                template=lineage.get("template_id"),
                item={
                    k: first.get(k)
                    for k in (
                        "format",
                        "question",
                        "context",
                        "options",
                        "answer_index",
                        "answer_text",
                        "reference",
                        "tests",
                    )
                },
                item_id=item_id,
                enrichment=next((r["enrichment"] for r in records if r.get("enrichment")), None),
                enrichment_rejected=enrich_failures.get(item_id, []),
            )
            candidate.verdicts = _verdicts(records, candidate, variants, checks, off, kept, dropped)
            candidates[index] = candidate
        for (seed_id, index), r in by_sample.items():
            if seed_id == seed["id"] and index not in candidates:
                candidates[index] = Candidate(sample_index=index, template=r.get("template_id"), rejected=r)
        views.append(SeedView(seed, [candidates[i] for i in sorted(candidates)], refused.get(seed["id"], [])))
    return PreviewView(views, checks, sorted(off, key=checks.index), variants, templates or {})


def _verdicts(
    records: list[dict[str, Any]],
    candidate: Candidate,
    variants: list[str],
    checks: list[str],
    off: set[str],
    kept: dict[str, dict[str, Any]],
    dropped: dict[str, dict[str, Any]],
) -> list[Verdict]:
    by_variant = {r["variant"]: r for r in records}
    out = []
    for variant in variants:
        record = by_variant.get(variant)
        if record is None:
            if variant == "label" and (candidate.item or {}).get("format") != "multiple_choice":
                continue  # by design: a generative item's label would repeat its answer document
            failure = next((f for f in candidate.enrichment_rejected if variant in (f.get("variants") or [])), None)
            out.append(
                Verdict(
                    variant,
                    None,
                    False,
                    stage="enrich",
                    reason=(failure or {}).get("reason", "not_written"),
                    detail=(failure or {}).get("detail"),
                )
            )
            continue
        verdict = Verdict(variant, record["id"], record["id"] in kept, text=record.get("text") or "")
        if verdict.kept:
            curated = kept[record["id"]]
            verdict.annotations = {k: curated[k] for k in ("verification", "semantic_match") if k in curated}
            verdict.checks = check_verdicts(checks, off, None)
        elif record["id"] in dropped:
            entry = dropped[record["id"]]
            verdict.stage, verdict.reason, verdict.detail = entry.get("stage"), entry.get("reason"), entry.get("detail")
            verdict.annotations = entry.get("annotations") or {}
            verdict.checks = check_verdicts(checks, off, verdict.stage)
        else:  # the filter folder does not hold this record: it predates the generated set
            verdict.stage, verdict.reason = "filter", "no_verdict"
            verdict.checks = {c: NOT_RECORDED for c in checks}
        out.append(verdict)
    return out


def view_counts(view: PreviewView) -> dict[str, int]:
    candidates = [c for s in view.seeds for c in s.candidates]
    verdicts = [v for c in candidates for v in c.verdicts]
    return {
        "seeds": len(view.seeds),
        "candidates": len(candidates),
        "items": sum(c.item is not None for c in candidates),
        "documents": sum(v.written for v in verdicts),
        "kept": sum(v.kept for v in verdicts),
    }


def drop_reasons(view: PreviewView) -> dict[str, int]:
    """`stage:reason` -> how many candidates (generation) or documents (enrichment, filter)."""
    counts: dict[str, int] = {}
    for s in view.seeds:
        for r in s.refused:
            key = f"generate:{r.get('reason')}"
            counts[key] = counts.get(key, 0) + 1
        for c in s.candidates:
            if c.rejected is not None:
                key = f"generate:{c.rejected.get('reason')}"
                counts[key] = counts.get(key, 0) + 1
            for v in c.verdicts:
                if not v.kept:
                    key = f"{v.stage}:{v.reason}"
                    counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def to_json(view: PreviewView) -> dict[str, Any]:
    """The view as plain data (preview.json), for scripts that compare two previews."""
    from dataclasses import asdict

    data = asdict(view)
    return json.loads(json.dumps(data, default=str))
