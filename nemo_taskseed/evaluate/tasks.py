"""Benchmarks from `eval:` config -> what lm-eval's `simple_evaluate` takes.

A benchmark with `eval.local_data` entries becomes a task *config dict*: the stock lm-eval YAML
(prompts, metrics, filters kept as they are) with its dataset pointed at local JSONL
(`dataset_path: json`, `dataset_kwargs.data_files`). That is how evaluation runs offline (no hub
access on compute nodes or here). Other benchmarks are passed by task name and need the hub or
a pre-populated HF datasets cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nemo_taskseed.config import ConfigError, to_container

GROUPS = ("knowledge", "commonsense", "code", "math")
CODE_EXECUTING_GROUPS = ("code",)


@dataclass(frozen=True)
class Benchmark:
    name: str
    task: str
    group: str
    num_fewshot: int
    metric: str  # lm-eval results key "<metric>,<filter>"
    limit: int | float | None
    local_data: dict[str, str] | None
    gen_kwargs: dict | None = None  # generation overrides, e.g. {max_gen_toks: 64}


def selected_benchmarks(eval_cfg: DictConfig) -> list[Benchmark]:
    table = to_container(eval_cfg.benchmarks)
    local = to_container(eval_cfg.local_data) or {}
    unknown_local = set(local) - set(table)
    if unknown_local:
        raise ConfigError(f"eval.local_data names unknown benchmarks: {sorted(unknown_local)}")
    out = []
    for name in eval_cfg.run:
        if name not in table:
            raise ConfigError(f"eval.run names {name!r}, which is not in eval.benchmarks ({', '.join(table)})")
        entry = table[name]
        missing = {"task", "group", "metric"} - set(entry)
        if missing:
            raise ConfigError(f"eval.benchmarks.{name} lacks {sorted(missing)}")
        if entry["group"] not in GROUPS:
            raise ConfigError(f"eval.benchmarks.{name}.group must be one of {GROUPS}, got {entry['group']!r}")
        limit = entry.get("limit", eval_cfg.limit)
        out.append(
            Benchmark(
                name,
                entry["task"],
                entry["group"],
                int(entry.get("num_fewshot", 0)),
                entry["metric"],
                limit,
                local.get(name),
                entry.get("gen_kwargs"),
            )
        )
    return out


def stock_task_config(task: str) -> dict[str, Any]:
    """The stock YAML of one task with its `include:` chain merged and `!function`s resolved."""
    from nemo_taskseed.utils.lm_eval_yaml import task_config, task_yaml_path

    path = task_yaml_path(task)
    if path is None:
        raise ConfigError(
            f"lm-eval task {task!r} has no single-task YAML; local_data works for single tasks only "
            f"(for a group such as mmlu_pro, list its subtasks as benchmarks)"
        )
    return task_config(path, functions="all")


def local_task_config(bench: Benchmark) -> dict[str, Any]:
    """The stock task, reading `bench.local_data` ({split: jsonl path}) instead of the hub."""
    cfg = stock_task_config(bench.task)
    files = {split: str(Path(p).resolve()) for split, p in (bench.local_data or {}).items()}
    for split, path in files.items():
        if not Path(path).is_file():
            raise ConfigError(f"eval.local_data.{bench.name}.{split}: file not found: {path}")
    # The split lm-eval scores, and (for few-shot) the split it draws examples from, must exist
    # locally, or lm-eval would silently find them empty.
    eval_split = cfg.get("test_split") or cfg.get("validation_split")
    if eval_split not in files:
        raise ConfigError(f"eval.local_data.{bench.name} needs the split lm-eval scores: {eval_split!r}")
    if bench.num_fewshot:
        fewshot_split = cfg.get("fewshot_split") or cfg.get("training_split") or cfg.get("validation_split")
        if fewshot_split not in files:
            raise ConfigError(f"eval.local_data.{bench.name}: {bench.num_fewshot}-shot needs split {fewshot_split!r}")
    # Drop splits we have no file for, so lm-eval does not look for them.
    for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
        if cfg.get(key) and cfg[key] not in files:
            cfg[key] = None
    cfg.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": files})
    cfg.pop("tag", None)
    cfg["num_fewshot"] = bench.num_fewshot
    return cfg
