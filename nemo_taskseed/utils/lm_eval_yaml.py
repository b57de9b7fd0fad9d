"""The one reader of lm-eval task YAML files (seeds, decontamination and eval hooks all use it).

A task YAML merges its `include:` chain (local keys win, as lm-eval merges them) and names Python
functions with `!function module.name`. lm-eval's own `load_yaml(resolve_func=True)` imports every
such module, and some do work at import time that has nothing to do with the caller (mbpp's utils
loads the `code_eval` metric from the hub, which fails offline). Here `!function` tags become
`FunctionRef`s, and each caller says which functions to import:

    task_config(path, functions="none")       dataset fields only; refs dropped (decontamination)
    task_config(path, functions="templates")  process_docs and doc_to_* imported (normalization)
    task_config(path, functions="all")        every ref imported (handing a task to lm-eval)

Tasks are found by name with `task_yaml_path(name)`, reading `task:` lines as text (importing every
task's modules to build lm-eval's TaskManager index would reach the network).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

TEMPLATE_KEYS = ("process_docs", "doc_to_text", "doc_to_choice", "doc_to_target")


@functools.cache
def task_manager(include_paths: tuple[str, ...] = ()):
    """lm-eval's `TaskManager`, built once per process and include-path list. Building its index
    parses every task YAML lm-eval ships (~10 s here); the catalog (one build per rule set) and the
    eval watcher (`simple_evaluate` builds a new one per call when none is passed: once per benchmark
    per checkpoint) would otherwise pay that every time. Nothing here mutates it."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include_paths) or None, metadata={})


@dataclass(frozen=True)
class FunctionRef:
    base_dir: Path
    spec: str  # "utils.process_docs", relative to the YAML that names it

    def resolve(self):
        from lm_eval.tasks._yaml_loader import _import_func_in_yml

        return _import_func_in_yml(self.spec, self.base_dir)


def _loader_for(base_dir: Path) -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: FunctionRef(base_dir, loader.construct_scalar(node)))
    return Loader


def load_task_yaml(path: str | Path, _seen: set[Path] | None = None) -> dict[str, Any]:
    """The task config with `include:` merged as lm-eval merges it (local keys win)."""
    path = Path(path).expanduser().resolve()
    seen = _seen or set()
    if path in seen:
        raise ValueError(f"include cycle at {path}")
    seen.add(path)
    with path.open("rb") as f:
        cfg = yaml.load(f, Loader=_loader_for(path.parent))  # noqa: S506 - our loader only adds !function refs
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a mapping, got {type(cfg).__name__}")
    includes = cfg.pop("include", None)
    if not includes:
        return cfg
    merged: dict[str, Any] = {}
    for inc in includes if isinstance(includes, list) else [includes]:
        inc_path = Path(inc) if Path(inc).is_absolute() else path.parent / inc
        inc_cfg = load_task_yaml(inc_path, seen)
        inc_cfg.pop("task_list", None)
        merged.update(inc_cfg)
    merged.update(cfg)
    return merged


def _drop_refs(value: Any) -> Any:
    if isinstance(value, FunctionRef):
        return None
    if isinstance(value, dict):
        return {k: _drop_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_drop_refs(v) for v in value]
    return value


def _resolve_refs(value: Any) -> Any:
    if isinstance(value, FunctionRef):
        return value.resolve()
    if isinstance(value, dict):
        return {k: _resolve_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v) for v in value]
    return value


def task_config(path: str | Path, functions: Literal["none", "templates", "all"] = "templates") -> dict[str, Any]:
    """A task's merged config, importing the `!function`s the caller needs (see the module doc)."""
    cfg = load_task_yaml(path)
    if functions == "all":
        return _resolve_refs(cfg)
    if functions == "none":
        return _drop_refs(cfg)
    resolved = {k: cfg[k].resolve() for k in TEMPLATE_KEYS if isinstance(cfg.get(k), FunctionRef)}
    cfg = _drop_refs(cfg)
    cfg.update(resolved)
    return cfg


def template_config(path: str | Path) -> dict[str, Any]:
    """Task config whose template functions are imported and whose other function refs are dropped."""
    return task_config(path, "templates")


def lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


@functools.cache
def _task_yaml_index() -> dict[str, Path]:
    index: dict[str, Path] = {}
    pattern = re.compile(r"^task:\s*['\"]?([A-Za-z0-9_.\-]+)['\"]?\s*$", re.M)
    for path in sorted(lm_eval_tasks_dir().rglob("*.yaml")):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for name in pattern.findall(text):
            index.setdefault(name, path)
    return index


def task_yaml_path(task: str) -> Path | None:
    """The stock YAML that defines `task` (a single task, not a group), or None."""
    return _task_yaml_index().get(task)
