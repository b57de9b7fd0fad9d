"""A finished run's folders, as the export reads them: config, curated set, seeds, catalog, reports.

The curated records are the filter step's published set (pipeline/publish.py): a run whose filter
was killed, is still running, or changed after it finished is refused, like every other reader of
a step folder refuses it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemo_taskseed.errors import UserError

RUN_SUMMARY = "run_summary.json"


@dataclass(frozen=True)
class SeedSource:
    """Where a seed row came from."""

    family: str
    task: str
    dataset_path: str | None
    dataset_name: str | None
    license: str | None


@dataclass
class FinishedRun:
    workdir: Path
    config: dict[str, Any]  # the resolved config `taskseed run` recorded
    steps: dict[str, Any]  # each step's summary, as recorded
    curated_parts: list[Path]

    @property
    def filter_dir(self) -> Path:
        return self.workdir / "filter"

    def records(self) -> Iterator[dict[str, Any]]:
        """The curated records, part by part in the published order, line by line."""
        from nemo_taskseed.utils.jsonl import read_jsonl

        for path in self.curated_parts:
            for _, record in read_jsonl(path):
                yield record

    def json_file(self, *parts: str) -> dict[str, Any] | None:
        """A step's JSON report, or None when the run has none (a step turned off)."""
        path = self.workdir.joinpath(*parts)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{path}: unreadable ({exc})") from exc
        return data if isinstance(data, dict) else None

    def seeds(self) -> Iterator[dict[str, Any]]:
        """Every seed of the run (`seeds/seeds.<task>.jsonl`, as the seeds step publishes them)."""
        from nemo_taskseed.utils.jsonl import read_jsonl

        for path in sorted((self.workdir / "seeds").glob("seeds.*.jsonl")):
            for _, seed in read_jsonl(path):
                yield seed

    def seed_sources(self) -> dict[str, SeedSource]:
        out = {}
        for seed in self.seeds():
            source = seed.get("source") or {}
            out[str(seed.get("id"))] = SeedSource(
                family=str(seed.get("family")),
                task=str(seed.get("task")),
                dataset_path=source.get("dataset_path"),
                dataset_name=source.get("dataset_name"),
                license=seed.get("license"),
            )
        return out

    def catalog_rows(self) -> dict[str, dict[str, Any]]:
        """Catalog rows by task name and by alias (empty when the run has no catalog)."""
        from nemo_taskseed.utils.jsonl import read_jsonl

        path = self.workdir / "catalog" / "catalog.jsonl"
        out: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for _, row in read_jsonl(path):
                for name in [row.get("task"), *(row.get("aliases") or [])]:
                    if name:
                        out.setdefault(str(name), row)
        return out


def open_run(workdir: str | Path) -> FinishedRun:
    """A `taskseed run` workdir whose run finished and whose filter step published a curated set."""
    from nemo_taskseed.pipeline import publish

    workdir = Path(workdir)
    if not workdir.is_dir():
        raise UserError(f"run folder not found: {workdir}")
    summary_path = workdir / RUN_SUMMARY
    if not summary_path.is_file():
        raise UserError(
            f"{workdir} is not a finished run: it has no {RUN_SUMMARY} (`taskseed run` writes it when every "
            "step has finished). Export the workdir of a finished `taskseed run`."
        )
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{summary_path}: unreadable ({exc}); rerun `taskseed run`") from exc
    if not isinstance(summary, dict) or not isinstance(summary.get("config"), dict):
        raise UserError(f"{summary_path}: no recorded config; rerun `taskseed run`")
    filter_dir = workdir / "filter"
    if not filter_dir.is_dir():
        raise UserError(
            f"{filter_dir} not found: the export takes the filter step's curated records, and this run has "
            "no filter step (run.steps)"
        )
    parts = publish.published_files(filter_dir, "curated")
    if parts is None:
        raise UserError(
            f"{filter_dir} has no {publish.SUMMARY} listing its curated set: not a folder a finished filter "
            "step wrote. Rerun the filter step."
        )
    return FinishedRun(workdir, summary["config"], summary.get("steps") or {}, parts)
