"""Load an lm-eval task YAML importing only the functions normalization calls.

`load_yaml(resolve_func=True)` imports every `!function` module of a task, and some of those
modules do work at import time that has nothing to do with templates (mbpp's utils loads the
`code_eval` metric from the hub). We parse `!function` tags into references and import only
`process_docs` and the `doc_to_*` templates; everything else a task references is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_KEYS = ("process_docs", "doc_to_text", "doc_to_choice", "doc_to_target")


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


def template_config(path: str | Path) -> dict[str, Any]:
    """Task config whose template functions are imported and whose other function refs are dropped."""
    cfg = load_task_yaml(path)
    resolved = {k: cfg[k].resolve() for k in TEMPLATE_KEYS if isinstance(cfg.get(k), FunctionRef)}
    cfg = _drop_refs(cfg)
    cfg.update(resolved)
    return cfg
