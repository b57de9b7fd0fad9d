"""Benchmark text to decontaminate against, read through lm-eval task configs.

Each benchmark of the configured list names lm-eval task folders (`lm_eval/tasks/<dir>`). Their
YAML files are read with `task_config(path, functions="none")` (utils/lm_eval_yaml.py): `!function` tags are dropped, so
no task module is imported (importing all of them reaches the network, and one exits the
process). From each task config we take `dataset_path`, `dataset_name` and the splits it scores:
`validation_split` and `test_split`. A `fewshot_split` or `training_split` is not scored and is
left to dedup against seeds (gsm8k draws few-shot examples from `train`). A split named `train`
is still taken when it is the scored one (gpqa's only split is `train`).

Rows come from a local mirror laid out `<root>/<dataset_path>/<dataset_name or default>/<split>.jsonl`
or from the Hugging Face hub via `datasets`. A split found nowhere is reported as missing, never
silently ignored.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.utils.jsonl import read_jsonl
from nemo_taskseed.utils.lm_eval_yaml import TEMPLATE_KEYS, lm_eval_tasks_dir, load_task_yaml, task_config

log = logging.getLogger(__name__)

SCORED_SPLIT_KEYS = ("validation_split", "test_split")


@dataclass(frozen=True)
class Benchmark:
    """One entry of `filter.decontam.benchmarks`."""

    name: str
    task_dirs: tuple[str, ...]
    tasks: tuple[str, ...] = ("*",)  # fnmatch patterns over lm-eval task names

    @classmethod
    def from_config(cls, entry: Any) -> Benchmark:
        entry = dict(entry)
        try:
            name = str(entry["name"])
        except KeyError as exc:
            raise UserError(f"filter.decontam.benchmarks: entry without `name`: {entry}") from exc
        dirs = entry.get("task_dirs") or [name]
        tasks = entry.get("tasks") or ["*"]
        return cls(name, tuple(str(d) for d in dirs), tuple(str(t) for t in tasks))


@dataclass
class ScoredSplit:
    """One dataset split a benchmark scores; several tasks may share it."""

    benchmark: str
    dataset_path: str
    dataset_name: str | None
    split: str
    tasks: list[str] = field(default_factory=list)
    # One task per distinct rendering of this split (process_docs / doc_to_text / choice / target):
    # {task, path, view}, for the rendered view of the index (decontam/render.py).
    renderings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.dataset_path, self.dataset_name, self.split)

    @property
    def label(self) -> str:
        name = self.dataset_name or "default"
        return f"{self.dataset_path}/{name}:{self.split}"


def _load_task_yaml(path: Path) -> dict[str, Any] | None:
    try:
        cfg = task_config(path, functions="none")
    except Exception as exc:  # a broken or templated file is skipped, not fatal
        log.debug("skipping %s: %s", path, exc)
        return None
    # Group files list tasks; only single-task configs carry a dataset.
    if not isinstance(cfg.get("task"), str) or not cfg.get("dataset_path"):
        return None
    return cfg


def scored_splits(benchmarks: Sequence[Benchmark], include_paths: Sequence[str | Path] = ()) -> list[ScoredSplit]:
    """Every (dataset, config, split) the benchmarks score, deduplicated across their tasks."""
    roots = [lm_eval_tasks_dir(), *(Path(p) for p in include_paths)]
    out: dict[tuple[str, tuple[str, str | None, str]], ScoredSplit] = {}
    for bench in benchmarks:
        found_dir = False
        for task_dir in bench.task_dirs:
            for root in roots:
                folder = root / task_dir
                if not folder.is_dir():
                    continue
                found_dir = True
                for path in sorted(folder.rglob("*.yaml")):
                    cfg = _load_task_yaml(path)
                    if cfg is None or not any(fnmatch.fnmatch(cfg["task"], pat) for pat in bench.tasks):
                        continue
                    kwargs = cfg.get("dataset_kwargs") or {}
                    if isinstance(kwargs, dict) and kwargs.get("data_files"):
                        # Local-file tasks (`dataset_path: json`) have no hub identity to mirror.
                        log.debug("skipping %s: data_files task", cfg["task"])
                        continue
                    for role in SCORED_SPLIT_KEYS:
                        split = cfg.get(role)
                        if not split:
                            continue
                        name = cfg.get("dataset_name")
                        key = (str(cfg["dataset_path"]), str(name) if name is not None else None, str(split))
                        entry = out.setdefault((bench.name, key), ScoredSplit(bench.name, *key))
                        if cfg["task"] not in entry.tasks:
                            entry.tasks.append(cfg["task"])
                        # Renderings differ by their template keys (a !function ref compared by
                        # folder and name, nothing imported here).
                        raw = load_task_yaml(path)
                        view = {k: raw.get(k) for k in TEMPLATE_KEYS}
                        if view not in [r["view"] for r in entry.renderings]:
                            entry.renderings.append({"task": cfg["task"], "path": str(path), "view": view})
        if not found_dir:
            raise UserError(
                f"filter.decontam.benchmarks: {bench.name}: none of the task folders {list(bench.task_dirs)} "
                f"exists under {[str(r) for r in roots]}"
            )
    return list(out.values())


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """One TCP connect to the hub endpoint per process, so an offline run fails fast."""
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def mirror_file(root: Path, split: ScoredSplit) -> Path:
    return Path(root) / split.dataset_path / (split.dataset_name or "default") / f"{split.split}.jsonl"


def load_split_rows(
    split: ScoredSplit, source: str, mirror: Path | None
) -> tuple[str, Iterator[dict[str, Any]] | None]:
    """(where the rows came from, the rows) or (why not, None).

    source: `mirror` (only the local mirror), `hub` (only `datasets.load_dataset`), `auto` (mirror
    first, then the hub unless HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set).
    """
    if source not in ("mirror", "hub", "auto"):
        raise UserError(f"filter.decontam.source must be mirror, hub or auto, got {source!r}")
    if source in ("mirror", "auto") and mirror is not None:
        path = mirror_file(mirror, split)
        if path.is_file():
            return str(path), (row for _, row in read_jsonl(path))
    if source == "mirror":
        return "not in mirror" if mirror is not None else "no mirror configured", None
    offline = any(os.environ.get(v, "0") not in ("", "0") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    if offline:
        return "hub offline (HF_HUB_OFFLINE)", None
    if not hub_reachable():
        # Without this probe, `datasets` retries every missing split for ~30 s.
        return "hub unreachable", None
    try:
        import datasets

        ds = datasets.load_dataset(split.dataset_path, split.dataset_name, split=split.split)
    except Exception as exc:  # gated, offline, renamed: report, do not crash the run
        return f"hub: {type(exc).__name__}: {str(exc)[:200]}", None
    return f"hub:{split.dataset_path}", iter(ds)
