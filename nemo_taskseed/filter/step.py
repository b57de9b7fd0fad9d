"""Stage 5 as one step: generated*.jsonl -> curated*.jsonl + rejected.jsonl + reports.

`run_step(cfg, in_dir, out_dir)` is what `taskseed run` calls; `taskseed filter` calls `run_filter`
with explicit folders.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
from nemo_curator.tasks import DocumentBatch

from nemo_taskseed.config import to_container
from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.records import records_to_frame, split_frame
from nemo_taskseed.utils.jsonl import iter_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)


def read_generated(in_dir: Path, pattern: str = "generated*.jsonl") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(records, unparseable lines as rejected entries): a bad line never stops the run."""
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise UserError(f"filter input folder not found: {in_dir}")
    files = sorted(in_dir.glob(pattern))
    if not files:
        raise UserError(f"{in_dir}: no {pattern} files (run the generate step first)")
    records, bad = [], []
    for f in files:
        for line_no, obj, error in iter_jsonl(f):
            if error is None:
                records.append(obj)
            else:
                reason = "unparseable_json" if error.startswith("not valid JSON") else "not_an_object"
                bad.append({"stage": "read", "reason": reason, "detail": {"file": str(f), "line": line_no, "error": error}})
    return records, bad


def build_stages(fcfg: dict[str, Any], seeds_dir: Path | None, *, backend: Any = None, backend_config: dict | None = None) -> list:
    from nemo_taskseed.filter.stages import (
        DecontaminationStage, ExactDedupStage, FuzzyDedupStage, SchemaValidationStage, VerificationStage,
    )

    seeds = str(seeds_dir) if seeds_dir else None
    stages: list = []
    if fcfg["validate"]["enabled"]:
        stages.append(SchemaValidationStage())
    dedup = fcfg["dedup"]
    if dedup.get("backend", "cpu") == "cpu":
        if dedup["exact"]["enabled"]:
            stages.append(ExactDedupStage(seeds_dir=seeds, fields=list(dedup["fields"])))
        if dedup["fuzzy"]["enabled"]:
            fz = dedup["fuzzy"]
            stages.append(FuzzyDedupStage(seeds_dir=seeds, fields=list(dedup["fields"]), threshold=float(fz["threshold"]),
                                          num_perm=int(fz["num_perm"]), ngram_size=int(fz["ngram_size"]), seed=int(fz["seed"])))
    elif dedup["backend"] != "gpu":
        raise UserError(f"filter.dedup.backend must be cpu or gpu, got {dedup['backend']!r}")
    dc = fcfg["decontam"]
    if dc["enabled"]:
        stages.append(DecontaminationStage(
            benchmarks=list(dc["benchmarks"]), source=dc["source"], mirror=dc.get("mirror"),
            include_paths=list(dc.get("include_paths") or []), ngram_size=int(dc["ngram_size"]),
            short_min_words=int(dc["short_min_words"]), fields=list(dc["fields"]), seed_fields=list(dc["seed_fields"]),
            seeds_dir=seeds, drop_children_of_contaminated_seeds=bool(dc["drop_children_of_contaminated_seeds"]),
        ))
    vf = fcfg["verify"]
    if vf["enabled"]:
        stages.append(VerificationStage(vote=dict(vf["vote"]), code=dict(vf["code"]), families=dict(vf.get("families") or {}),
                                        backend_config=backend_config, backend=backend, keep_outputs=bool(vf.get("keep_outputs"))))
        if fcfg["validate"]["enabled"]:
            # The records as written (with their `verification` annotation) are checked once more.
            stages.append(SchemaValidationStage(name="final_schema"))
    return stages


def run_stages(stages: list, task: DocumentBatch, executor: str) -> DocumentBatch:
    """The stages as a Curator Pipeline on `executor` (ray_data, xenna, or inline: this process)."""
    from nemo_curator.pipeline import Pipeline

    from nemo_taskseed.pipeline.executors import make_executor

    out = Pipeline(name="taskseed_filter", stages=stages).run(make_executor(executor), initial_tasks=[task])
    if not out:
        raise RuntimeError("filter pipeline returned no batch")
    if len(out) == 1:
        return out[0]
    # Executors may split a batch; stats of every part are merged, rows concatenated.
    meta: dict[str, Any] = {"filter_stats": {}}
    for t in out:
        meta["filter_stats"].update(t._metadata.get("filter_stats", {}))
    return DocumentBatch(dataset_name=out[0].dataset_name, data=pd.concat([t.to_pandas() for t in out], ignore_index=True), _metadata=meta)


def _apply_gpu_dedup(df: pd.DataFrame, fcfg: dict[str, Any], seeds: list[dict], out_dir: Path) -> None:
    """filter.dedup.backend=gpu: Curator's workflows mark duplicates; we reject them with a reason."""
    from nemo_taskseed.filter.dedup import gpu
    from nemo_taskseed.filter.records import kept_mask, reject

    cache = Path(fcfg["dedup"]["gpu"].get("cache_path") or out_dir / ".dedup_cache")
    rows = df.index[kept_mask(df)]
    items = [(f"seed:{s.get('id')}", s) for s in seeds] + [(df.at[i, "id"], json.loads(df.at[i, "record"])) for i in rows]
    src = gpu.write_dedup_input(cache / "input", items, list(fcfg["dedup"]["fields"]))
    for kind, wf in (("exact", gpu.exact_workflow(src.parent, cache / "exact")),
                     ("fuzzy", gpu.fuzzy_workflow(src.parent, cache / "fuzzy", cache / "fuzzy_cache", fcfg["dedup"]["gpu"]))):
        wf.run()
        dup = gpu.removal_ids(cache / kind)
        for i in rows:
            if df.at[i, "id"] in dup and df.at[i, "status"] == "kept":
                reject(df, i, f"{kind}_dedup", f"gpu_{kind}_duplicate", {})


def run_filter(
    cfg: Any, in_dir: Path, out_dir: Path, seeds_dir: Path | None = None, *, backend: Any = None, progress: bool = True,
) -> dict[str, Any]:
    """Filter `in_dir/generated*.jsonl` into `out_dir`; returns the counts and report paths."""
    from nemo_taskseed.filter.report import contamination_report, human_summary, quality_report
    from nemo_taskseed.filter.stages import _load_seeds

    full = to_container(cfg)
    fcfg = full["filter"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    records, unparsed = read_generated(Path(in_dir))
    seeds = _load_seeds(str(seeds_dir) if seeds_dir else None)
    df = records_to_frame(records)
    executor = fcfg.get("executor", "inherit")
    if executor == "inherit":
        executor = (full.get("run") or {}).get("executor", "ray_data")
    backend_config = fcfg["verify"].get("backend") or full
    stages = build_stages(fcfg, seeds_dir, backend=backend, backend_config=backend_config)
    if fcfg["dedup"].get("backend") == "gpu":
        _apply_gpu_dedup(df, fcfg, seeds, out_dir)
    task = DocumentBatch(dataset_name="taskseed_generated", data=df)
    # The model-free stages go through the Curator executor; verification runs where
    # filter.verify.executor says (default inline: the vLLM engine lives in this process, as in
    # the generate step, instead of inside a Ray actor).
    verify_executor = fcfg["verify"].get("executor", "inline")
    if verify_executor == "inherit":
        verify_executor = executor
    at = next((i for i, s in enumerate(stages) if s.name == "verify"), len(stages))
    model_free, verify = stages[:at], stages[at:]
    if len(df) and model_free:
        task = run_stages(model_free, task, executor)
    if len(df) and verify:
        task = run_stages(verify, task, verify_executor)
    df = task.to_pandas()
    stats = task._metadata.get("filter_stats", {})

    kept, rejected = split_frame(df)
    for u in unparsed:
        rejected.append({"id": None, "seed_id": None, "family": None, "annotations": {}, "record": None, **u})
    write_jsonl(out_dir / "curated.jsonl", kept)
    write_jsonl(out_dir / "rejected.jsonl", rejected)
    contamination = contamination_report(df, stats.get("decontam"))
    write_json(out_dir / "contamination_report.json", contamination)
    quality = quality_report(df, seeds, {k: {kk: vv for kk, vv in v.items() if kk not in ("coverage", "contaminated_seeds")}
                                         for k, v in stats.items()}, unparsed)
    write_json(out_dir / "quality_report.json", quality)
    summary = human_summary(quality)
    (out_dir / "quality_summary.txt").write_text(summary + "\n")
    reasons: dict[str, int] = {}
    for r in rejected:
        key = f"{r['stage']}:{r['reason']}"
        reasons[key] = reasons.get(key, 0) + 1
    result = {
        "in": len(records) + len(unparsed), "kept": len(kept), "rejected": len(rejected), "rejected_by_reason": reasons,
        "contaminated_seeds": len(contamination["seeds"]), "missing_benchmark_splits": len(contamination["missing_splits"]),
        "seconds": round(time.monotonic() - start, 1), "summary": summary,
        "outputs": {k: str(out_dir / f) for k, f in (("curated", "curated.jsonl"), ("rejected", "rejected.jsonl"),
                    ("contamination", "contamination_report.json"), ("quality", "quality_report.json"))},
    }
    return result


def run_step(cfg: Any, in_dir: Path, out_dir: Path) -> dict[str, Any]:
    """`taskseed run` hook: seeds from `<run.workdir>/seeds`; prints the human summary."""
    workdir = Path(to_container(cfg)["run"]["workdir"])
    result = run_filter(cfg, in_dir, out_dir, workdir / "seeds")
    print(result.pop("summary"))
    result["summary_file"] = str(Path(out_dir) / "quality_summary.txt")
    return result
