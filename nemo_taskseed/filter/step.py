"""Stage 5 as one step: generated parts in, curated parts + rejects + reports out.

    in_dir/generated/part-<shard>.jsonl -> out_dir/curated/part-<shard>.jsonl    kept records (+ verification)
                                           out_dir/rejected/part-<shard>.jsonl   dropped, with stage/reason/detail
                                           out_dir/shards/<shard>.json           done marker + counts + node
                                           out_dir/quality_report.json, quality_summary.txt,
                                           contamination_report.json, contamination.md, summary.json
                                           out_dir/work/                         intermediate files

The step is five named phases over one state (pipeline/driver.py `run_phases`):

    indexes   the benchmark indexes, built once and loaded by every worker (filter/indexes.py)
    screen    per shard, in parallel: read, then every screen check and the signatures and
              embeddings the resolve phase needs -> work/frames, work/dedup, work/semantic
              (seeds files join as reference shards: checked against the benchmarks, never filtered)
    resolve   once over all shards: dedup and contaminated seeds decided -> work/drops (filter/resolve.py)
    verify    per shard, in parallel: drops applied, every verify check, written -> curated/rejected
    report    the markers merged into the reports and summary.json (filter/summary.py)

Which checks run, in which order, and what they are built from comes from the check registry
(filter/checks.py); the settings are parsed once (filter/settings.py). Both per-shard passes go
through the shard driver, so a restart redoes only unfinished shards; the driver holds no
records, only per-shard counts.

`run_step(cfg, in_dir, out_dir)` is what `taskseed run` calls; `taskseed filter` calls `run_filter`.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
from nemo_curator.tasks import DocumentBatch

from nemo_taskseed.config import to_container
from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.checks import CheckContext, all_checks, check_stages
from nemo_taskseed.filter.settings import FilterSettings
from nemo_taskseed.pipeline import publish, shards
from nemo_taskseed.pipeline.driver import Phase, Shard, run_phases, run_shards
from nemo_taskseed.pipeline.lock import holds_output_lock
from nemo_taskseed.utils.jsonl import LineRange, line_ranges

WORK = "work"
# Sections every screen shard's fingerprint includes; a check whose section lies elsewhere adds
# its own (`_check_sections`), so a new check's settings reach the fingerprint without an edit here.
SCREEN_SECTIONS = ("validate", "decontam", "dedup", "quality")
VERIFY_SECTIONS = ("validate", "verify")
# Phase-1 work files per shard (removed with the shard when it is no longer planned).
WORK_FILES = (
    ("frames", ".parquet"),
    ("dedup", ".keys.npz"),
    ("dedup", ".sig.npy"),
    ("dedup", ".bands.npy"),
    ("drops", ".jsonl"),
    ("semantic", ".npy"),
    ("semantic", ".json"),
)


def input_files(in_dir: Path) -> list[tuple[str, Path]]:
    """(name, file) for the generate step's parts, or for legacy `generated*.jsonl` files."""
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


def input_parts(in_dir: Path, shard_bytes: int = 0) -> tuple[list[tuple[str, Path]], dict[str, LineRange]]:
    """(shard, file) for every shard of the input, and the line range of each shard that is a piece
    of a larger file: a file over `shard_bytes` (0: no limit) is cut at line ends into pieces
    `<name>.r00000`, `<name>.r00001`, ... (names sort in file order), so one large file is screened
    and verified by many workers. Dedup and every other decision go by item id, so the kept records
    are the same whatever the shard size."""
    parts: list[tuple[str, Path]] = []
    spans: dict[str, LineRange] = {}
    for name, path in input_files(in_dir):
        ranges = line_ranges(path, shard_bytes)
        if len(ranges) == 1:
            parts.append((name, path))
            continue
        for k, span in enumerate(ranges):
            parts.append((f"{name}.r{k:05d}", path))
            spans[f"{name}.r{k:05d}"] = span
    return parts, spans


def seed_parts(seeds_dir: Path | None) -> list[tuple[str, Path]]:
    if not seeds_dir:
        return []
    seeds_dir = Path(seeds_dir)
    if not seeds_dir.is_dir():
        raise UserError(f"seeds folder not found: {seeds_dir}")
    return [(f"seeds~{shards.safe_name(p.stem)}", p) for p in sorted(seeds_dir.glob("seeds*.jsonl"))]


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


def _check_sections(settings: FilterSettings, phases: tuple[str, ...], covered: tuple[str, ...]) -> dict[str, Any]:
    """The settings of the needed checks of `phases` whose sections the fixed list does not cover."""
    return {
        c.section: settings.section(c.section)
        for c in all_checks()
        if c.phase in phases and c.is_needed(settings) and c.section.split(".")[0] not in covered
    }


def screen_fingerprint(settings: FilterSettings, index_info: dict[str, Any]) -> str:
    """What a screened shard is made from, besides its input file."""
    raw, embed = settings.raw, settings.needs_embeddings
    dc = raw["decontam"]
    parts: list[Any] = [
        raw["validate"],
        {k: dc[k] for k in ("enabled", "fields", "seed_fields")},
        index_info.get("fingerprint"),
        dc.get("semantic") if embed else None,
        index_info.get("semantic", {}).get("fingerprint"),
        raw["dedup"],
        raw["quality"],
        embed,
        settings.families,
        settings.task_kinds,
    ]
    extra = _check_sections(settings, ("screen", "resolve"), SCREEN_SECTIONS)
    return shards.fingerprint(*parts, *([extra] if extra else []))


def verify_fingerprint(settings: FilterSettings) -> str:
    """What a written shard is made from, besides its screened rows and its drops."""
    raw = settings.raw
    parts = [raw["validate"], raw["verify"], settings.backend_config if settings.verify_on else None]
    extra = _check_sections(settings, ("verify",), VERIFY_SECTIONS)
    return shards.fingerprint(*parts, *([extra] if extra else []))


def _screen_outputs(settings: FilterSettings, work: Path, shard: str, kind: str) -> tuple[Path, ...]:
    files = [work / "frames" / f"{shard}.parquet"] if kind == "generated" else []
    if settings.needs_embeddings:
        files += [work / "semantic" / f"{shard}.{s}" for s in ("npy", "json")]
    if settings.cpu_dedup:
        files += [work / "dedup" / f"{shard}.{s}" for s in ("keys.npz", "sig.npy", "bands.npy")]
    return tuple(files)


def _screen(state: dict[str, Any]) -> None:
    """Per shard: read, the screen checks, signatures and embeddings -> work/."""
    from nemo_taskseed.filter.shard_io import ReadFilterShardStage, ScreenedShardWriterStage

    settings, work, indexes = state["settings"], state["work"], state["indexes"]
    settings_fp = screen_fingerprint(settings, indexes.info)
    planned = []
    for kind, parts in (("seeds", state["seeds"]), ("generated", state["gen"])):
        for shard, path in parts:
            span = state["spans"].get(shard)
            where = [shards.file_fingerprint(path)] + ([[span.start, span.end]] if span else [])
            fp = shards.fingerprint(settings_fp, *where)
            data = {"file": [str(path)]}
            if span is not None:
                data.update(start=[span.start], end=[span.end], first_line=[span.first_line])
            task = DocumentBatch(
                dataset_name=shard,
                data=pd.DataFrame(data),
                _metadata={"shard": shard, "fingerprint": fp, "kind": kind},
            )
            planned.append(Shard(shard, fp, task, _screen_outputs(settings, work, shard, kind)))
    ctx = CheckContext(
        settings, work, state["out_dir"], indexes.decontam_path, indexes.semantic_prefix, state["backend"]
    )
    max_bytes = int(settings.raw["validate"].get("max_record_bytes") or 0)
    run = run_shards(
        work,
        planned,
        lambda _: [
            ReadFilterShardStage(max_record_bytes=max_bytes),
            *check_stages(ctx, ("screen", "resolve")),
            ScreenedShardWriterStage(work_dir=str(work)),
        ],
        settings.executor,
        label="filter 1/2 (screen)",
        name="taskseed_filter_screen",
        extra=WORK_FILES,
        require_markers=False,
    )
    state.update(ctx=ctx, screened=run.ran)


def _resolve(state: dict[str, Any]) -> None:
    from nemo_taskseed.filter.resolve import resolve_drops

    state["resolved"] = resolve_drops(state["settings"], state["gen"], state["seeds"], state["work"], state["out_dir"])


def _verify(state: dict[str, Any]) -> None:
    """Per shard: the global drops applied, the verify checks, curated/rejected parts and the marker."""
    from nemo_taskseed.filter.shard_io import ApplyDropsStage, CuratedShardWriterStage

    settings, work, out_dir = state["settings"], state["work"], state["out_dir"]
    settings_fp = verify_fingerprint(settings)
    planned = []
    for shard, _ in state["gen"]:
        screened = shards.read_marker(work, shard) or {}
        drops = work / "drops" / f"{shard}.jsonl"
        fp = shards.fingerprint(
            settings_fp, screened.get("fingerprint"), hashlib.sha256(drops.read_bytes()).hexdigest()
        )
        task = DocumentBatch(
            dataset_name=shard, data=pd.DataFrame({"shard": [shard]}), _metadata={"shard": shard, "fingerprint": fp}
        )
        outputs = tuple(shards.part_path(out_dir, k, shard) for k in ("curated", "rejected"))
        planned.append(Shard(shard, fp, task, outputs))
    run = run_shards(
        out_dir,
        planned,
        lambda _: [
            ApplyDropsStage(work_dir=str(work)),
            *check_stages(state["ctx"], ("verify",)),
            CuratedShardWriterStage(out_dir=str(out_dir)),
        ],
        settings.verify_executor,
        label="filter 2/2 (verify, write)",
        name="taskseed_filter_verify",
        kinds=("curated", "rejected"),
    )
    state.update(markers=run.markers, written=run.ran)


def _report(state: dict[str, Any]) -> None:
    from nemo_taskseed.filter.summary import merge_markers, write_reports

    merged = merge_markers(state["markers"], state["written"], state["screened"], state["work"])
    counts = {
        "total": len(state["gen"]),
        "seed_shards": len(state["seeds"]),
        "screened_now": len(state["screened"]),
        "written_now": len(state["written"]),
    }
    state["result"] = write_reports(
        state["settings"],
        state["out_dir"],
        state["in_dir"],
        state["seeds_dir"],
        counts,
        merged,
        state["resolved"],
        state["indexes"].info,
    )


def _indexes(state: dict[str, Any]) -> None:
    from nemo_taskseed.filter.indexes import build_indexes

    state["indexes"] = build_indexes(state["settings"], state["work"])


PHASES = (
    Phase("indexes", _indexes),
    Phase("screen", _screen),
    Phase("resolve", _resolve),
    Phase("verify", _verify),
    Phase("report", _report),
)


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
    start = time.monotonic()
    settings = FilterSettings.from_config(cfg, task_verifiers(seeds_dir))  # every bad setting fails here
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    publish.begin(out_dir)  # the reports below and the parts are replaced; nothing claims a finished set
    state = {
        "settings": settings,
        "in_dir": Path(in_dir),
        "out_dir": out_dir,
        "work": out_dir / WORK,
        "seeds_dir": seeds_dir,
        "seeds": seed_parts(seeds_dir),
        "backend": backend,
    }
    state["gen"], state["spans"] = input_parts(Path(in_dir), settings.shard_bytes)
    result = run_phases("filter", PHASES, state)["result"]
    result["seconds"] = round(time.monotonic() - start, 1)
    return result


def run_step(cfg: Any, in_dir: Path, out_dir: Path) -> dict[str, Any]:
    """`taskseed run` hook: seeds from `<run.workdir>/seeds`; prints the human summary."""
    workdir = Path(to_container(cfg)["run"]["workdir"])
    seeds_dir = workdir / "seeds"
    result = run_filter(cfg, in_dir, out_dir, seeds_dir if seeds_dir.is_dir() else None)
    print(result.pop("summary"))
    result["summary_file"] = str(Path(out_dir) / "quality_summary.txt")
    return result
