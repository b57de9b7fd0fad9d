"""`taskseed export RUN --out DIR`: a finished run's curated records as a Hugging Face dataset folder.

    DIR/README.md                                      dataset card, with the hub's YAML header
    DIR/LICENSE.md                                     the license section of the card, on its own
    DIR/data/<format>/train-NNNNN-of-NNNNN.parquet      the records, fixed Features (export/dataset.py)
    DIR/filter_drops.png, DIR/diversity.png            charts the card links (when the run has them)
    DIR/export.json                                    counts, license decision, files with sha256

`datasets.load_dataset(DIR)` loads the `default` config (every record), `load_dataset(DIR,
"multiple_choice")` / `"generative"` one format. The folder is built beside DIR and moved into
place at the end: an interrupted export leaves the previous one (or nothing) at DIR.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.export.dataset import FORMATS, ShardFile, ShardWriter, config_globs, record_to_row
from nemo_taskseed.export.license import (
    UNKNOWN,
    LeftOut,
    LicenseDecision,
    LicenseRules,
    ModelLicense,
    decide,
    model_license,
)
from nemo_taskseed.export.source import FinishedRun, SeedSource, open_run

MANIFEST = "export.json"
MANIFEST_SCHEMA = "taskseed.export/1"


@dataclass(frozen=True)
class ExportSettings:
    rows_per_shard: int
    row_group_rows: int
    license_compatible_only: bool
    share_alike_licenses: list[str]
    task_categories: dict[str, list[str]]
    pretty_name: str | None
    tags: list[str]
    hub: dict[str, Any]

    @classmethod
    def from_config(cls, cfg: Any, **changes: Any) -> ExportSettings:
        from nemo_taskseed.config import section_settings

        values = section_settings(cls, cfg, "export", strict=True)
        settings = cls(**values)
        return replace(settings, **{k: v for k, v in changes.items() if v is not None})


@dataclass
class ExportStats:
    """What the card tells about the exported records (after `license_compatible_only`)."""

    rows: int = 0
    per_config: Counter = field(default_factory=Counter)
    family_variant: Counter = field(default_factory=Counter)  # (family, variant) -> records
    family_source: Counter = field(default_factory=Counter)  # (family, the seed's dataset) -> records
    per_kind: Counter = field(default_factory=Counter)
    per_language: Counter = field(default_factory=Counter)
    per_source: Counter = field(default_factory=Counter)  # every source a record came from
    generator_models: Counter = field(default_factory=Counter)  # (model, backend) -> records
    enrichment_models: Counter = field(default_factory=Counter)
    verifier_models: Counter = field(default_factory=Counter)
    verification_methods: Counter = field(default_factory=Counter)
    with_extra: int = 0  # rows whose `extra` column is set
    untraced: int = 0  # records whose seed is in neither the seeds nor the catalog
    license_mismatch: Counter = field(default_factory=Counter)  # (source, record's, table's) -> records


@dataclass
class ExportResult:
    out_dir: Path
    run: FinishedRun
    settings: ExportSettings
    stats: ExportStats
    decision: LicenseDecision
    left_out: LeftOut
    shards: list[ShardFile]
    models: dict[str, list[ModelLicense]]
    seeds_per_source: Counter  # (family, dataset_path, dataset_name) -> seeds
    seconds: float = 0.0
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def configs(self) -> dict[str, int]:
        return {
            "default": self.stats.rows,
            **{c: self.stats.per_config[c] for c in FORMATS if self.stats.per_config[c]},
        }


class _Tracer:
    """A record's sources (its seed's dataset, then its few-shot examples'), language and config."""

    def __init__(self, seeds: dict[str, SeedSource], catalog: dict[str, dict[str, Any]]):
        self.seeds, self.catalog = seeds, catalog

    def trace(self, record: dict[str, Any]) -> tuple[list[str | None], dict[str, str | None]]:
        lineage = record.get("lineage") if isinstance(record.get("lineage"), dict) else {}
        seed = self.seeds.get(str(record.get("seed_id")))
        row = self.catalog.get(str(record.get("task"))) or self.catalog.get(str(lineage.get("seed_task")))
        if seed is not None and seed.dataset_path:
            source, config = seed.dataset_path, seed.dataset_name
        elif row is not None:
            source, config = row.get("dataset_path"), row.get("dataset_name")
        else:
            source, config = None, None
        sources = [source]
        for example_id in lineage.get("example_seed_ids") or []:
            example = self.seeds.get(str(example_id))
            sources.append(example.dataset_path if example is not None else None)
        language = row.get("language") if row is not None else None
        derived = {"language": language, "source": source, "source_config": config}
        return list(dict.fromkeys(sources)), derived


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    cfg: Any,
    *,
    license_compatible_only: bool | None = None,
) -> ExportResult:
    """Write the export of the finished run `run_dir` to `out_dir` (replacing an earlier export there)."""
    start = time.monotonic()
    settings = ExportSettings.from_config(cfg, license_compatible_only=license_compatible_only)
    run = open_run(run_dir)
    out_dir = Path(out_dir)
    _check_destination(out_dir, run.workdir)
    staging = out_dir.parent / f".{out_dir.name}.tmp{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        result = _write(run, settings, staging)
        from nemo_taskseed.export.card import write_card

        write_card(result, staging)
        result.seconds = round(time.monotonic() - start, 2)
        _write_manifest(result, staging)
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.out_dir = out_dir
    return result


# A run's own folders: an export inside one would be taken for (or replace) that step's output.
_RUN_FOLDERS = {"catalog", "seeds", "generate", "filter", "tokenize", "blend", "demo_mirror"}


def _check_destination(out_dir: Path, workdir: Path) -> None:
    out, run = out_dir.resolve(), workdir.resolve()
    if out == run or out in run.parents:
        raise UserError(f"--out {out_dir} holds the run {workdir}: the export replaces its folder, give another one")
    if run in out.parents and out.relative_to(run).parts[0] in _RUN_FOLDERS:
        raise UserError(
            f"--out {out_dir} is inside the run's {out.relative_to(run).parts[0]}/ folder: give another one"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; give a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
        raise UserError(
            f"--out {out_dir} is not empty and holds no earlier export ({MANIFEST}): give an empty or new folder "
            "(an earlier export there is replaced)"
        )


def _write(run: FinishedRun, settings: ExportSettings, root: Path) -> ExportResult:
    rules = LicenseRules(run.config.get("catalog") or {}, settings.share_alike_licenses)
    seeds = run.seed_sources()
    tracer = _Tracer(seeds, run.catalog_rows())
    writers = {f: ShardWriter(root, f, settings.rows_per_shard, settings.row_group_rows) for f in FORMATS}
    stats, left_out = ExportStats(), LeftOut()
    for record in run.records():
        sources, derived = tracer.trace(record)
        terms = [rules.of(s) for s in sources]
        if settings.license_compatible_only:
            blocking = [t for t in terms if not t.compatible]
            if blocking:
                left_out.add(blocking)
                continue
        fmt = record.get("format")
        if fmt not in writers:
            raise UserError(
                f"{run.filter_dir}: record {record.get('id')!r} has format {fmt!r}, not one of {list(FORMATS)}: "
                "not a curated record of this version"
            )
        row = record_to_row(record, derived)
        writers[fmt].add(row)
        _count(stats, record, row, terms, derived)
    shards = [s for w in writers.values() for s in w.close()]
    if not stats.rows:
        why = (
            f": --license-compatible-only left out all {left_out.total} (sources {', '.join(sorted(left_out.records))})"
            if left_out.total
            else f": the curated set of {run.filter_dir} is empty"
        )
        raise UserError(f"nothing to export from {run.workdir}{why}")
    decision = decide(rules, dict(stats.per_source))
    seeds_per_source = Counter((s.family, s.dataset_path, s.dataset_name) for s in seeds.values())
    return ExportResult(
        out_dir=root,
        run=run,
        settings=settings,
        stats=stats,
        decision=decision,
        left_out=left_out,
        shards=shards,
        models=_models(run, stats),
        seeds_per_source=seeds_per_source,
    )


def _count(stats: ExportStats, record: dict[str, Any], row: dict[str, Any], terms: list, derived: dict) -> None:
    stats.rows += 1
    stats.per_config[record["format"]] += 1
    stats.family_variant[(str(record.get("family")), str(record.get("variant")))] += 1
    stats.family_source[(str(record.get("family")), derived.get("source"))] += 1
    stats.per_kind[str(record.get("kind"))] += 1
    stats.per_language[derived.get("language") or UNKNOWN] += 1
    for t in terms:
        stats.per_source[t.source] += 1
    if derived.get("source") is None:
        stats.untraced += 1
    seed_terms = terms[0]
    if record.get("license") != seed_terms.license:
        stats.license_mismatch[(seed_terms.source, str(record.get("license")), seed_terms.license)] += 1
    lineage = record.get("lineage") if isinstance(record.get("lineage"), dict) else {}
    stats.generator_models[(str(lineage.get("model")), str(lineage.get("backend")))] += 1
    enrichment = record.get("enrichment") if isinstance(record.get("enrichment"), dict) else None
    if enrichment and isinstance(enrichment.get("lineage"), dict):
        lin = enrichment["lineage"]
        stats.enrichment_models[(str(lin.get("model")), str(lin.get("backend")))] += 1
    verification = record.get("verification")
    if isinstance(verification, dict):
        stats.verification_methods[str(verification.get("method"))] += 1
        for member in verification.get("members") or []:
            if isinstance(member, dict) and member.get("model"):
                stats.verifier_models[(str(member["model"]), "")] += 1
    if row.get("extra") is not None:
        stats.with_extra += 1


def _models(run: FinishedRun, stats: ExportStats) -> dict[str, list[ModelLicense]]:
    """Generator, enrichment and verifier models with their licenses (as far as recorded)."""
    out: dict[str, list[ModelLicense]] = {
        "generator": [model_license(m) for m, _ in sorted(stats.generator_models)],
        "enrichment": [model_license(m) for m, _ in sorted(stats.enrichment_models)],
        "verifier": [model_license(m) for m, _ in sorted(stats.verifier_models)],
    }
    verify = ((run.config.get("filter") or {}).get("verify")) or {}
    if verify.get("enabled") and not out["verifier"]:
        # Verified, but no record names its voters (code items only, or an older run): the config does.
        named = [b.get("model") for b in verify.get("panel") or [] if isinstance(b, dict)]
        if not named and isinstance(verify.get("backend"), dict):
            named = [verify["backend"].get("model")]
        out["verifier"] = [model_license(str(m)) for m in named if m]
    return out


def _write_manifest(result: ExportResult, root: Path) -> None:
    from nemo_taskseed.pipeline.publish import file_entry
    from nemo_taskseed.utils.jsonl import write_json

    files = {str(s.path): {"rows": s.rows, "bytes": s.bytes, "sha256": s.sha256} for s in result.shards}
    for path in sorted(root.iterdir()):
        if path.is_file() and path.name != MANIFEST:
            files[path.name] = file_entry(path)
    result.files = files
    compatible = sorted(LicenseRules(result.run.config.get("catalog") or {}, []).table.compatible)
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "run": str(result.run.workdir),  # as given: the export may be published, the machine is not
        "records": result.stats.rows,
        "configs": {
            name: {"records": n, "data_files": config_globs(result.configs)[name]} for name, n in result.configs.items()
        },
        "license": result.decision.as_dict(),
        "license_compatible_only": result.settings.license_compatible_only,
        "left_out": {
            "records": result.left_out.total,
            "by_source": result.left_out.as_dict(compatible),
        },
        "rows_with_extra": result.stats.with_extra,
        "records_untraced": result.stats.untraced,
        "models": {
            role: [{"model": m.model, "name": m.name, "license": m.license, "evidence": m.evidence} for m in models]
            for role, models in result.models.items()
        },
        "seconds": result.seconds,
        "files": files,
    }
    write_json(root / MANIFEST, manifest)


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Swap the finished folder in: the previous export (if any) is moved aside, then removed."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        out_dir.rename(old)
    staging.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def push_to_hub(out_dir: Path, repo_id: str, hub: dict[str, Any]) -> str:
    """Upload the export folder to the dataset repository `repo_id` (created if missing); returns its URL."""
    from huggingface_hub import HfApi, get_token

    if get_token() is None:
        raise UserError(
            f"--push-to-hub {repo_id}: no Hugging Face token (set HF_TOKEN or run `hf auth login`). "
            f"The export is complete in {out_dir}; push it later with `hf upload {repo_id} {out_dir} --repo-type dataset`."
        )
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="dataset", private=bool(hub.get("private", True)), exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(out_dir),
            repo_id=repo_id,
            repo_type="dataset",
            commit_message=str(hub.get("commit_message") or "taskseed export"),
        )
    except Exception as exc:  # noqa: BLE001 - network, auth, offline mode: all mean "not uploaded"
        raise UserError(
            f"--push-to-hub {repo_id}: upload failed ({type(exc).__name__}: {exc}). The export is complete in "
            f"{out_dir}; push it later with `hf upload {repo_id} {out_dir} --repo-type dataset`."
        ) from exc
    return str(getattr(commit, "commit_url", None) or f"https://huggingface.co/datasets/{repo_id}")
