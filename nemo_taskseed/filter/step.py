"""Stage 5 as one step, shard by shard: generated parts in, curated parts + rejects + reports out.

    in_dir/generated/part-<shard>.jsonl -> out_dir/curated/part-<shard>.jsonl    kept records (+ verification)
                                           out_dir/rejected/part-<shard>.jsonl   dropped, with stage/reason/detail
                                           out_dir/shards/<shard>.json           done marker + counts + node
                                           out_dir/quality_report.json, quality_summary.txt,
                                           contamination_report.json, summary.json
                                           out_dir/work/                         intermediate files (below)

Three phases (see `filter/stages.py`): per shard in parallel (read, schema, decontamination,
dedup signatures -> `work/frames`, `work/dedup`), once globally (exact and fuzzy dedup resolved
over all signatures with bounded memory -> `work/drops`), per shard in parallel (drops applied,
verification, final schema, writer). Seeds files join phase 1 as reference shards. Every phase
skips shards whose marker matches, so a restart redoes only unfinished shards; the driver holds
no records, only per-shard counts. The benchmark index is built once (`work/decontam_index.pkl`)
and loaded by every worker.

`run_step(cfg, in_dir, out_dir)` is what `taskseed run` calls; `taskseed filter` calls `run_filter`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from nemo_curator.tasks import DocumentBatch

from nemo_taskseed.config import section_settings, to_container
from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.dedup.sharded import DedupSettings, id_of, key_of, resolve
from nemo_taskseed.filter.quality.explanation import ExplanationSettings
from nemo_taskseed.filter.semantic.check import SemanticSettings
from nemo_taskseed.filter.verify import CodeSettings, VoteSettings
from nemo_taskseed.filter.verify.sandbox import sandbox_warnings
from nemo_taskseed.llm.cost import stage_cost
from nemo_taskseed.pipeline import publish, shards
from nemo_taskseed.pipeline.lock import holds_output_lock
from nemo_taskseed.utils.jsonl import atomic_path, iter_jsonl, write_json, write_jsonl, write_text_atomic

WORK = "work"


def input_parts(in_dir: Path) -> list[tuple[str, Path]]:
    """(shard, file) for the generate step's parts, or for legacy `generated*.jsonl` files."""
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise UserError(f"filter input folder not found: {in_dir}")
    published = publish.published_files(in_dir, "generated")  # a generate folder: only its finished set
    parts = published if published is not None else shards.part_files(in_dir, "generated")
    if parts:
        return [(shards.shard_of_part(p), p) for p in parts]
    legacy = sorted(in_dir.glob("generated*.jsonl"))
    if not legacy:
        raise UserError(f"{in_dir}: no generated/part-*.jsonl or generated*.jsonl files (run the generate step first)")
    return [(shards.safe_name(p.stem), p) for p in legacy]


def seed_parts(seeds_dir: Path | None) -> list[tuple[str, Path]]:
    if not seeds_dir:
        return []
    seeds_dir = Path(seeds_dir)
    if not seeds_dir.is_dir():
        raise UserError(f"seeds folder not found: {seeds_dir}")
    return [(f"seeds~{shards.safe_name(p.stem)}", p) for p in sorted(seeds_dir.glob("seeds*.jsonl"))]


def _task(shard: str, path: Path, fp: str, kind: str) -> DocumentBatch:
    return DocumentBatch(
        dataset_name=shard,
        data=pd.DataFrame({"file": [str(path)]}),
        _metadata={"shard": shard, "fingerprint": fp, "kind": kind},
    )


def decontam_benchmarks(dc: dict[str, Any]) -> list[dict[str, Any]]:
    """`benchmarks` plus `extra_benchmarks` (by name; an extra one replaces a same-named one)."""
    merged = {str(b["name"]): dict(b) for b in dc.get("benchmarks") or []}
    for b in dc.get("extra_benchmarks") or []:
        merged[str(b["name"])] = dict(b)
    return list(merged.values())


def default_benchmarks_left_out(dc: dict[str, Any]) -> list[str]:
    """Default benchmarks (configs/base/filter.yaml) this configuration does not check."""
    from nemo_taskseed.config import base_config

    defaults = [str(b["name"]) for b in to_container(base_config())["filter"]["decontam"]["benchmarks"]]
    checked = {str(b["name"]) for b in decontam_benchmarks(dc)}
    return [name for name in defaults if name not in checked]


def ensure_decontam_index(dc: dict[str, Any], work: Path) -> tuple[str, dict[str, Any]]:
    """Build the benchmark index once (reused while its settings are unchanged); returns its pickle's
    path and its description (sizes, per-split coverage) for the contamination report."""
    from nemo_taskseed.filter.decontam import build_index

    settings = {
        k: dc.get(k)
        for k in (
            "benchmarks",
            "extra_benchmarks",
            "source",
            "mirror",
            "include_paths",
            "ngram_size",
            "short_min_words",
        )
    }
    # An index built before rendered prompts were indexed, or before the semantic views, is rebuilt.
    settings["index_views"] = ["raw", "rendered", "semantic:prompt,core,qa"]
    fp = shards.fingerprint(settings)
    pkl, info_path = work / "decontam_index.pkl", work / "decontam_index.json"
    views_path = work / "decontam_views.json"
    if pkl.is_file() and info_path.is_file() and views_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("fingerprint") == fp:
            return str(pkl), info
    built = build_index(
        decontam_benchmarks(dc),
        source=dc["source"],
        mirror=dc.get("mirror"),
        ngram_size=int(dc["ngram_size"]),
        short_min_words=int(dc["short_min_words"]),
        include_paths=list(dc.get("include_paths") or []),
        progress=True,
    )
    work.mkdir(parents=True, exist_ok=True)
    with atomic_path(pkl) as tmp, open(tmp, "wb") as handle:
        pickle.dump(built.index, handle, protocol=pickle.HIGHEST_PROTOCOL)
    # The rows' views, for the semantic index (built from them without reading the benchmarks again).
    write_json(views_path, {"views": built.views})
    info = {
        "fingerprint": fp,
        "index_ngrams": len(built.index),
        "index_short_strings": built.index.n_short,
        "coverage": [c.to_dict() for c in built.coverage],
    }
    write_json(info_path, info)
    return str(pkl), info


def ensure_semantic_index(dc: dict[str, Any], work: Path, index_info: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Embed every indexed benchmark row once (reused while the benchmark index and the model
    settings are unchanged); returns the faiss index's path prefix and its description."""
    from nemo_taskseed.filter.decontam.ngrams import BenchmarkRow
    from nemo_taskseed.filter.semantic import Embedder, SemanticIndex

    sem = SemanticSettings.from_config(dc["semantic"])
    fp = shards.fingerprint(index_info.get("fingerprint"), sem.model, sem.max_seq_length)
    prefix, info_path = work / "semantic_index", work / "semantic_index.info.json"
    if prefix.with_suffix(".faiss").is_file() and info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("fingerprint") == fp:
            return str(prefix), info
    entries = json.loads((work / "decontam_views.json").read_text(encoding="utf-8"))["views"]
    rows = [BenchmarkRow(bench, split, int(row)) for bench, split, row, *_ in entries]
    texts = [e[4] for e in entries]
    started = time.monotonic()
    embedder = Embedder(sem.model, sem.max_seq_length, sem.batch_size, sem.device)
    vectors, cached = cached_embeddings(embedder, texts)
    SemanticIndex(rows, texts, vectors, [e[3] for e in entries]).save(prefix)
    scored_rows = sum(c.get("rows", 0) for c in index_info.get("coverage", []))
    distinct_rows = len(set(rows))
    info = {
        "fingerprint": fp,
        "rows": distinct_rows,
        "vectors": len(rows),
        "views": dict(Counter(e[3] for e in entries)),
        "rows_without_text": scored_rows - distinct_rows,
        "model": embedder.model,
        "embed_seconds": round(time.monotonic() - started, 1),
        "from_cache": cached,
    }
    write_json(info_path, info)
    return str(prefix), info


def cached_embeddings(embedder: Any, texts: list[str]) -> tuple[Any, bool]:
    """The texts' embeddings, kept in the user cache (`cache_dir("embeddings")`) under a hash of the
    model and the texts: the benchmark rows are the same in every run and embedding them on a CPU
    costs minutes (~25 rows/s on 2 busy cores), so a new output folder does not pay again."""
    import numpy as np

    from nemo_taskseed.paths import cache_dir

    digest = hashlib.sha256(
        "\n".join([Path(embedder.path).name, str(embedder.max_seq_length), *texts]).encode("utf-8")
    ).hexdigest()[:32]
    path = cache_dir("embeddings") / f"{digest}.npy"
    if path.is_file():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            return vectors, True
    vectors = embedder.embed(texts)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, vectors)
    return vectors, False


def _run(stages: list, tasks: list[DocumentBatch], executor: str, label: str) -> None:
    from nemo_curator.pipeline import Pipeline

    from nemo_taskseed.pipeline.executors import make_executor

    if tasks:
        Pipeline(name=f"taskseed_filter_{label}", stages=stages).run(
            make_executor(executor, progress=label), initial_tasks=tasks
        )


def task_verifiers(seeds_dir: Path | None) -> dict[str, str]:
    """task -> the answer check the catalog derived for it (`per_task.*.verifier` of the seeds
    step's summary); empty without a seeds folder or for seeds written before the catalog did."""
    summary = Path(seeds_dir) / "summary.json" if seeds_dir is not None else None
    if summary is None or not summary.is_file():
        return {}
    try:
        per_task = json.loads(summary.read_text()).get("per_task") or {}
    except json.JSONDecodeError as exc:
        raise UserError(f"{summary}: not valid JSON ({exc}); rerun the seeds step") from exc
    return {
        task: str(info["verifier"])
        for task, info in per_task.items()
        if isinstance(info, dict) and info.get("verifier")
    }


def _phase1(
    fcfg: dict, gen: list, seeds: list, work: Path, executor: str, task_kinds: dict[str, str] | None = None
) -> dict[str, Any]:
    """Per shard: read, schema, decontamination, dedup signatures. Returns the index description."""
    from nemo_taskseed.filter.stages import (
        DecontaminationStage,
        DedupSignatureStage,
        ExplanationStage,
        ItemRulesStage,
        ReadFilterShardStage,
        SchemaValidationStage,
        ScreenedShardWriterStage,
        SemanticDecontaminationStage,
        TextQualityStage,
    )

    dc, dedup = fcfg["decontam"], fcfg["dedup"]
    index_path, index_info = ensure_decontam_index(dc, work) if dc["enabled"] else (None, {})
    coverage = index_info.get("coverage") or []
    if dc["enabled"] and not any(c.get("loaded") for c in coverage) and not dc.get("allow_empty"):
        missing = ", ".join(f"{c['benchmark']} {c['split']}" for c in coverage[:6]) + (
            " ..." if len(coverage) > 6 else ""
        )
        raise UserError(
            f"decontamination could not load any of the {len(coverage)} scored benchmark splits ({missing}; "
            f"source={dc['source']}, mirror={dc.get('mirror')}): nothing would be checked. Point "
            "filter.decontam.mirror at a mirror that holds them, allow the hub (filter.decontam.source=hub), or "
            "accept an unchecked run with filter.decontam.allow_empty=true"
        )
    on = checks_run(fcfg)  # the one place that decides which checks run (the summary says the same)
    semantic_prefix, semantic_info = (
        ensure_semantic_index(dc, work, index_info) if on["semantic_decontam"] else (None, {})
    )
    cpu_dedup = dedup["backend"] == "cpu" and (dedup["exact"]["enabled"] or dedup["fuzzy"]["enabled"])
    settings = DedupSettings.from_config(dedup)
    settings_fp = shards.fingerprint(
        fcfg["validate"],
        {k: dc[k] for k in ("enabled", "fields", "seed_fields")},
        index_info.get("fingerprint"),
        dc.get("semantic") if needs_embeddings(fcfg) else None,
        semantic_info.get("fingerprint"),
        dedup,
        fcfg["quality"],
        needs_embeddings(fcfg),
        fcfg["verify"].get("families") or {},
        task_kinds or {},
    )

    embed = needs_embeddings(fcfg)

    def outputs(shard: str, kind: str) -> list[Path]:
        files = [work / "frames" / f"{shard}.parquet"] if kind == "generated" else []
        if embed:
            files += [work / "semantic" / f"{shard}.{s}" for s in ("npy", "json")]
        if cpu_dedup:
            files += [work / "dedup" / f"{shard}.{s}" for s in ("keys.npz", "sig.npy", "bands.npy")]
        return files

    tasks = []
    for kind, parts in (("seeds", seeds), ("generated", gen)):
        for shard, path in parts:
            fp = shards.fingerprint(settings_fp, shards.file_fingerprint(path))
            if not shards.is_done(work, shard, fp, outputs(shard, kind)):
                tasks.append(_task(shard, path, fp, kind))
    planned = {s for s, _ in gen} | {s for s, _ in seeds}
    shards.remove_unplanned(
        work,
        planned,
        (),
        (
            ("frames", ".parquet"),
            ("dedup", ".keys.npz"),
            ("dedup", ".sig.npy"),
            ("dedup", ".bands.npy"),
            ("drops", ".jsonl"),
            ("semantic", ".npy"),
            ("semantic", ".json"),
        ),
    )
    families = dict(fcfg["verify"].get("families") or {})
    stages: list = [ReadFilterShardStage(max_record_bytes=int(fcfg["validate"].get("max_record_bytes") or 0))]
    if on["schema"]:
        stages.append(SchemaValidationStage())
    quality = fcfg["quality"]
    if on["text_quality"]:
        from nemo_taskseed.filter.quality import build_checks

        build_checks(quality["checks"])  # a bad filter name or parameter fails here, before any shard runs
        if quality["enrichment_failure"] not in ("strip", "drop"):
            raise UserError(
                f"filter.quality.enrichment_failure: expected strip or drop, got {quality['enrichment_failure']!r}"
            )
        stages.append(
            TextQualityStage(checks=list(quality["checks"]), enrichment_failure=quality["enrichment_failure"])
        )
    if on["item_rules"]:
        stages.append(ItemRulesStage(families=families, task_kinds=dict(task_kinds or {})))
    if on["explanation"]:
        stages.append(
            ExplanationStage(
                settings=ExplanationSettings.from_config(quality["explanation"], families, task_kinds),
                enrichment_failure=quality["enrichment_failure"],
            )
        )
    if on["decontam"]:
        stages.append(
            DecontaminationStage(index_path=index_path, fields=list(dc["fields"]), seed_fields=list(dc["seed_fields"]))
        )
    if on["semantic_decontam"] or embed:
        # Also when only semantic dedup or the diversity metrics are on: the stage embeds each kept
        # item once and saves the vectors for both.
        stages.append(
            SemanticDecontaminationStage(
                index_prefix=semantic_prefix or "",
                settings=SemanticSettings.from_config(dc["semantic"]),
                save_dir=str(work / "semantic") if embed else "",
                cache_dir=str(work.parent / "cache"),  # the filter folder's, beside verify's
            )
        )
    if cpu_dedup:
        stages.append(DedupSignatureStage(settings=settings, work_dir=str(work)))
    stages.append(ScreenedShardWriterStage(work_dir=str(work)))
    _run(stages, tasks, executor, "filter 1/2 (screen)")
    screened = {t.dataset_name for t in tasks}
    return {**index_info, "semantic": semantic_info, "shards_run": len(tasks), "screened": screened}


def _phase2(fcfg: dict, gen: list, seeds: list, work: Path, out_dir: Path) -> tuple[list[dict], dict[str, int], dict]:
    """Global: contaminated seeds and dedup decisions -> `work/drops/<shard>.jsonl`.
    Returns (contaminated seeds, seeds per family, diversity metrics per family)."""
    dc, dedup = fcfg["decontam"], fcfg["dedup"]
    seed_markers = shards.read_markers(work, [s for s, _ in seeds])
    contaminated = [h for m in seed_markers.values() if m for h in m.get("contaminated_seeds", [])]
    per_family: dict[str, int] = {}
    for m in seed_markers.values():
        shards.add_counts(per_family, (m or {}).get("seeds_per_family", {}))
    dirty = (
        {h["seed_id"]: h for h in contaminated} if dc["enabled"] and dc["drop_children_of_contaminated_seeds"] else {}
    )

    drops: dict[str, dict[str, dict]] = {s: {} for s, _ in gen}
    settings = DedupSettings.from_config(dedup)
    if dedup["backend"] == "cpu" and (settings.exact or settings.fuzzy):
        names = [s for s, _ in seeds] + [s for s, _ in gen]
        decided = resolve([work / "dedup" / n for n in names], settings, excluded_seed_keys={key_of(s) for s in dirty})
        for position, items in decided.items():
            for key, drop in items.items():
                drops[names[position]][id_of(key)] = {"stage": drop.stage, "reason": drop.reason, "detail": drop.detail}
    elif dedup["backend"] == "gpu":
        _gpu_dedup(fcfg, gen, seeds, work, out_dir, drops)
    elif dedup["backend"] != "cpu":
        raise UserError(f"filter.dedup.backend must be cpu or gpu, got {dedup['backend']!r}")
    diversity: dict[str, Any] = {}
    if needs_embeddings(fcfg):
        diversity = _semantic_phase2(fcfg, gen, seeds, work, drops, dirty)
    if dirty:  # children of contaminated seeds, decided here so dedup never keeps one of them
        for shard, _ in gen:
            frame = pd.read_parquet(work / "frames" / f"{shard}.parquet", columns=["item_id", "seed_id", "status"])
            for item_id, seed_id in zip(frame["item_id"], frame["seed_id"]):
                if seed_id in dirty and item_id not in drops[shard]:
                    hit = dirty[seed_id]
                    drops[shard][item_id] = {
                        "stage": "decontam",
                        "reason": "seed_contaminated",
                        "detail": {k: hit[k] for k in ("seed_id", "benchmark", "split", "row", "ngram")},
                    }
    for shard, items in drops.items():
        write_jsonl(
            work / "drops" / f"{shard}.jsonl", ({"item_id": k, **v} for k, v in sorted(items.items())), sort_keys=True
        )
    return contaminated, per_family, diversity


def _semantic_phase2(
    fcfg: dict, gen: list, seeds: list, work: Path, drops: dict[str, dict[str, dict]], dirty: dict[str, Any]
) -> dict[str, Any]:
    """Semantic dedup over every shard's saved item embeddings (items not already dropped, nor
    children of contaminated seeds), then the diversity metrics of what is left. Both read the
    per-shard files one shard at a time (filter/semantic/dedup.py, diversity.py): memory does not
    grow with the run."""
    from nemo_taskseed.filter.semantic.dedup import SemanticDedupSettings, semantic_duplicates_sharded
    from nemo_taskseed.filter.semantic.diversity import diversity_from_shards

    names = [shard for shard, _ in gen]
    item_prefixes = [work / "semantic" / shard for shard in names]
    seed_prefixes = [work / "semantic" / shard for shard, _ in seeds]
    sem = fcfg["dedup"].get("semantic") or {}
    if sem.get("enabled"):
        for d in semantic_duplicates_sharded(
            item_prefixes,
            seed_prefixes,
            SemanticDedupSettings.from_config(sem),
            work / "semantic_buckets",
            excluded_items={k: set(drops[shard]) for k, shard in enumerate(names)},
            excluded_seeds=set(dirty),
        ):
            drops[names[d.part]][d.item_id] = {"stage": "semantic_dedup", "reason": d.reason, "detail": d.detail}
    div = fcfg.get("diversity") or {}
    if not div.get("enabled"):
        return {}
    return diversity_from_shards(
        item_prefixes,
        seed_prefixes,
        excluded_items=[set(drops[shard]) for shard in names],
        excluded_seeds=set(dirty),
        max_items_per_family=int(div.get("max_items_per_family") or 5000),
    )


def needs_embeddings(fcfg: dict) -> bool:
    """Semantic dedup and the diversity metrics read the item embeddings the semantic stage saves."""
    on = checks_run(fcfg)
    return bool(on["semantic_decontam"] or on["semantic_dedup"] or (fcfg.get("diversity") or {}).get("enabled"))


def _gpu_dedup(
    fcfg: dict, gen: list, seeds: list, work: Path, out_dir: Path, drops: dict[str, dict[str, dict]]
) -> None:
    """filter.dedup.backend=gpu: Curator's cudf workflows mark duplicates over the kept items of
    every shard and the seeds (input written from the phase-1 frames); we reject them with a reason."""
    from nemo_taskseed.filter.dedup import gpu
    from nemo_taskseed.filter.records import kept_items

    cfg = fcfg["dedup"]
    cache = Path(cfg["gpu"].get("cache_path") or out_dir / ".dedup_cache")
    items: list[tuple[str, dict]] = []
    owner: dict[str, str] = {}
    for _, path in seeds:
        items.extend((f"seed:{obj.get('id')}", obj) for _, obj, err in iter_jsonl(path) if err is None)
    for shard, _ in gen:
        df = pd.read_parquet(work / "frames" / f"{shard}.parquet")
        reps, _ = kept_items(df)
        for i in reps:
            owner[df.at[i, "item_id"]] = shard
            items.append((df.at[i, "item_id"], json.loads(df.at[i, "record"])))
    src = gpu.write_dedup_input(cache / "input", items, list(cfg["fields"]))
    for kind, wf in (
        ("exact", gpu.exact_workflow(src.parent, cache / "exact")),
        ("fuzzy", gpu.fuzzy_workflow(src.parent, cache / "fuzzy", cache / "fuzzy_cache", cfg["gpu"])),
    ):
        wf.run()
        for item_id in gpu.removal_ids(cache / kind):
            if item_id in owner and item_id not in drops[owner[item_id]]:
                drops[owner[item_id]][item_id] = {
                    "stage": f"{kind}_dedup",
                    "reason": f"gpu_{kind}_duplicate",
                    "detail": {},
                }


def _phase3(
    fcfg: dict,
    full: dict,
    gen: list,
    work: Path,
    out_dir: Path,
    executor: str,
    backend: Any,
    task_kinds: dict[str, str] | None = None,
) -> set[str]:
    """Per shard: apply drops, verify, final schema, write curated/rejected parts and the marker.
    Returns the shards this call wrote (the others were finished already)."""
    from nemo_taskseed.filter.stages import (
        ApplyDropsStage,
        CuratedShardWriterStage,
        SchemaValidationStage,
        VerificationStage,
    )

    vf = fcfg["verify"]
    backend_config = vf.get("backend") or full["generate"]["backend"]
    settings_fp = shards.fingerprint(fcfg["validate"], vf, backend_config if vf["enabled"] else None)
    tasks = []
    for shard, _ in gen:
        screened = shards.read_marker(work, shard) or {}
        drops = work / "drops" / f"{shard}.jsonl"
        fp = shards.fingerprint(
            settings_fp, screened.get("fingerprint"), hashlib.sha256(drops.read_bytes()).hexdigest()
        )
        outputs = [shards.part_path(out_dir, k, shard) for k in ("curated", "rejected")]
        if not shards.is_done(out_dir, shard, fp, outputs):
            tasks.append(
                DocumentBatch(
                    dataset_name=shard,
                    data=pd.DataFrame({"shard": [shard]}),
                    _metadata={"shard": shard, "fingerprint": fp},
                )
            )
    shards.remove_unplanned(out_dir, {s for s, _ in gen}, ("curated", "rejected"))
    on = checks_run(fcfg)
    stages: list = [ApplyDropsStage(work_dir=str(work))]
    if on["verify"]:
        stages.append(
            VerificationStage(
                vote=VoteSettings.from_config(vf["vote"]),
                code=CodeSettings.from_config(vf["code"]),
                families=dict(vf.get("families") or {}),
                task_kinds=dict(task_kinds or {}),
                backend_config=backend_config,
                backend=backend,
                cache_dir=str(out_dir / "cache"),
                keep_outputs=bool(vf.get("keep_outputs")),
                panel=[dict(m) for m in vf.get("panel") or []],
                drop_too_easy=bool(vf.get("drop_too_easy")),
            )
        )
    if on["final_schema"]:
        # The records as written (with their `verification` annotation) are checked once more.
        stages.append(SchemaValidationStage(name="final_schema"))
    stages.append(CuratedShardWriterStage(out_dir=str(out_dir)))
    verify_executor = section_settings(None, vf, "filter.verify", ["executor"])["executor"]
    if verify_executor == "inherit" or not vf["enabled"]:
        verify_executor = executor
    _run(stages, tasks, verify_executor, "filter 2/2 (verify, write)")
    return {t.dataset_name for t in tasks}


def step_executor(full: dict) -> str:
    """filter.executor, or run.executor where it says inherit (both set in configs/base)."""
    executor = section_settings(None, full, "filter", ["executor"])["executor"]
    return section_settings(None, full, "run", ["executor"])["executor"] if executor == "inherit" else executor


@holds_output_lock("filter", "out_dir")
def run_filter(
    cfg: Any,
    in_dir: Path,
    out_dir: Path,
    seeds_dir: Path | None = None,
    *,
    backend: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Filter `in_dir`'s generated parts into `out_dir`; returns the counts and report paths."""
    from nemo_taskseed.filter.report import (
        contamination_markdown,
        contamination_report,
        human_summary,
        quality_report,
    )

    full = to_container(cfg)
    fcfg = full["filter"]
    if fcfg["verify"]["enabled"]:  # a bad verify setting fails before any work
        VoteSettings.from_config(full)
        CodeSettings.from_config(full)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    publish.begin(out_dir)  # the reports below and the parts are replaced; nothing claims a finished set
    work = out_dir / WORK
    start = time.monotonic()
    executor = step_executor(full)
    gen, seeds = input_parts(Path(in_dir)), seed_parts(seeds_dir)

    task_kinds = task_verifiers(seeds_dir)
    index_info = _phase1(fcfg, gen, seeds, work, executor, task_kinds)
    screened_now = index_info.pop("screened")
    contaminated, seeds_per_family, diversity = _phase2(fcfg, gen, seeds, work, out_dir)
    run_now = _phase3(fcfg, full, gen, work, out_dir, executor, backend, task_kinds)

    markers = shards.read_markers(out_dir, [s for s, _ in gen])
    missing = [s for s, m in markers.items() if m is None]
    if missing:
        raise RuntimeError(f"{len(missing)} filter shard(s) have no done marker after the run: {missing[:5]}")
    stages: dict[str, Any] = {}
    families: dict[str, Any] = {}
    records: list[dict] = []
    nodes: dict[str, int] = {}
    usage: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    kept = rejected = 0
    files: dict[str, Any] = {}
    for shard, m in markers.items():
        files.update(publish.shard_files(out_dir, m, shard, ("curated", "rejected")))
        shards.add_counts(usage, m.get("usage") or {})
        if shard in run_now:
            shards.add_counts(requests, m.get("requests") or {})
        if shard in screened_now:  # the judge's requests, from phase 1's marker
            shards.add_counts(requests, (shards.read_marker(work, shard) or {}).get("requests") or {})
        shards.add_counts(stages, m["stages"])
        shards.add_counts(families, m["families"])
        records.extend(m["contaminated_records"])
        kept, rejected = kept + m["kept"], rejected + m["rejected"]
        nodes[m["worker"]["node_id"]] = nodes.get(m["worker"]["node_id"], 0) + 1
    from nemo_taskseed.filter.stages import STAGE_ORDER

    stages = {stage: stages[stage] for stage in STAGE_ORDER if stage in stages}  # pipeline order, not merge order
    for stage, on in checks_run(fcfg).items():
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
    quality = quality_report(families, seeds_per_family, stages)
    plot = None
    if diversity:
        from nemo_taskseed.filter.semantic.diversity import plot_diversity

        quality["diversity"] = diversity
        plot = plot_diversity(diversity, out_dir / "diversity.png")
    contamination = contamination_report(records, contaminated, index_info)
    warnings = data_warnings(fcfg, contamination, seeds_dir)
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
    result = {
        "in": kept + rejected,
        "kept": kept,
        "rejected": rejected,
        "rejected_by_reason": dict(sorted(reasons.items())),
        "contaminated_seeds": len(contamination["seeds"]),
        "missing_benchmark_splits": len(contamination["missing_splits"]),
        "warnings": warnings,
        "cost": {stage: stage_cost(u) for stage, u in usage.items() if u},
        # The model requests (verify; judge, when on) of the shards this invocation ran (a
        # resumed run shows what it sent, not what earlier runs did): sent, cached, refused.
        "requests": {stage: r for stage, r in requests.items() if r},
        "shards": {
            "total": len(gen),
            "seed_shards": len(seeds),
            "screened_now": index_info.get("shards_run", 0),
            "written_now": len(run_now),
            "by_node": dict(sorted(nodes.items())),
        },
        "outputs": {
            "curated": str(out_dir / "curated" / "part-*.jsonl"),
            "rejected": str(out_dir / "rejected" / "part-*.jsonl"),
            "contamination": str(out_dir / "contamination_report.json"),
            "contamination_review": str(out_dir / "contamination.md"),
            "quality": str(out_dir / "quality_report.json"),
        },
    }
    for report in ("contamination_report.json", "contamination.md", "quality_report.json", "quality_summary.txt"):
        files[report] = publish.file_entry(out_dir / report)
    if plot is not None:
        files[plot.name] = publish.file_entry(plot)
        result["outputs"]["diversity_plot"] = str(plot)
    # The published set, written last (pipeline/publish.py): readers take exactly these files.
    result["files"] = dict(sorted(files.items()))
    result["inputs"] = publish.input_record(in_dir)  # a later generate run makes this set stale
    write_json(out_dir / "summary.json", result, sort_keys=True)
    result["seconds"] = round(time.monotonic() - start, 1)
    result["summary"] = summary
    return result


def checks_run(fcfg: dict) -> dict[str, bool]:
    """Which rejecting stages this configuration runs (stage name -> on)."""
    quality, dedup = fcfg["quality"], fcfg["dedup"]
    return {
        "schema": bool(fcfg["validate"]["enabled"]),
        "text_quality": bool(quality["enabled"]),
        "item_rules": bool(quality["enabled"]),
        "explanation": bool(quality["enabled"] and quality["explanation"]["enabled"]),
        "decontam": bool(fcfg["decontam"]["enabled"]),
        "semantic_decontam": bool(
            fcfg["decontam"]["enabled"] and (fcfg["decontam"].get("semantic") or {}).get("enabled")
        ),
        "exact_dedup": bool(dedup["exact"]["enabled"]),
        "fuzzy_dedup": bool(dedup["fuzzy"]["enabled"]),
        "semantic_dedup": bool(dedup["backend"] == "cpu" and (dedup.get("semantic") or {}).get("enabled")),
        "verify": bool(fcfg["verify"]["enabled"]),
        "final_schema": bool(fcfg["verify"]["enabled"] and fcfg["validate"]["enabled"]),
    }


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


def data_warnings(fcfg: dict, contamination: dict, seeds_dir: Path | None) -> list[str]:
    """What changes the meaning of the kept data: a check that did not run, or ran on nothing."""
    warnings = []
    if not fcfg["verify"]["enabled"]:
        warnings.append("verification is off (filter.verify.enabled=false): answers were not checked")
    elif not fcfg["verify"].get("backend") and not fcfg["verify"].get("panel"):
        warnings.append(
            "verification uses the generator's own model (filter.verify.backend and filter.verify.panel "
            "unset): the model grades its own items; give verification a model of its own"
        )
    if not fcfg["quality"]["enabled"]:
        warnings.append(
            "quality checks are off (filter.quality.enabled=false): text, item and explanation rules not applied"
        )
    elif not fcfg["quality"]["explanation"]["enabled"]:
        warnings.append("explanation checks are off (filter.quality.explanation.enabled=false)")
    if not fcfg["decontam"]["enabled"]:
        warnings.append("decontamination is off (filter.decontam.enabled=false)")
    else:
        if not (fcfg["decontam"].get("semantic") or {}).get("enabled"):
            warnings.append(
                "semantic decontamination is off (filter.decontam.semantic.enabled=false): "
                "paraphrased benchmark items are only caught when they share a 13-gram"
            )
        elif contamination.get("semantic", {}).get("index_rows") == 0:
            warnings.append("semantic decontamination ran on an empty index: no benchmark row was embedded")
        left_out = default_benchmarks_left_out(fcfg["decontam"])
        if left_out:
            # A list given in a config file or on the command line replaces the defaults (OmegaConf
            # merges lists by replacing them): say which ones are no longer checked.
            warnings.append(
                f"decontamination does not check {len(left_out)} of the default benchmarks "
                f"({', '.join(left_out)}): filter.decontam.benchmarks was replaced; add benchmarks "
                "with filter.decontam.extra_benchmarks to keep the defaults"
            )
        coverage = contamination["coverage"]
        loaded = sum(1 for c in coverage if c.get("loaded"))
        if loaded < len(coverage):
            warnings.append(
                f"decontamination indexed {loaded} of {len(coverage)} scored benchmark splits "
                "(the rest could not be loaded: see contamination_report.json missing_splits)"
            )
    dedup = fcfg["dedup"]
    if not (dedup["exact"]["enabled"] or dedup["fuzzy"]["enabled"]):
        warnings.append("dedup is off")
    if seeds_dir is None:
        warnings.append("no seeds folder: generated items were not checked against their seeds")
    if fcfg["verify"]["enabled"]:  # a bound the code sandbox cannot enforce where it runs
        warnings.extend(sandbox_warnings(CodeSettings.from_config(fcfg["verify"]["code"])))
    return warnings


def run_step(cfg: Any, in_dir: Path, out_dir: Path) -> dict[str, Any]:
    """`taskseed run` hook: seeds from `<run.workdir>/seeds`; prints the human summary."""
    workdir = Path(to_container(cfg)["run"]["workdir"])
    seeds_dir = workdir / "seeds"
    result = run_filter(cfg, in_dir, out_dir, seeds_dir if seeds_dir.is_dir() else None)
    print(result.pop("summary"))
    result["summary_file"] = str(Path(out_dir) / "quality_summary.txt")
    return result
