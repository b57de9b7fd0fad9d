"""What lm-eval shows the model: a task's `process_docs`, `doc_to_text`, `doc_to_choice` and
`doc_to_target` applied to the raw rows, so the n-gram index also holds the rendered prompt.

The raw row is not always what the model sees: hellaswag's `process_docs` detokenizes its text
(" [title]" -> ". ", brackets dropped), MMLU and CommonsenseQA lay the options out as "A. ... B. ...".
A generated item that copies the rendered prompt shares n-grams with it that the raw row lacks.

Templates are rendered with lm-eval's own Jinja environment (`lm_eval.utils.apply_template`).
`!function` references (read as "<task folder>/<module>.<function>" by `load_yaml(resolve_func=
False)`) are imported from the task's folder, only for the tasks being indexed. A task that cannot
be rendered (a missing dependency, a function that needs more than the row) is skipped and
counted; its raw rows are indexed all the same.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=64)
def _function(ref: str) -> Callable[..., Any]:
    module_path, name = ref.rsplit(".", 1)
    path = Path(module_path + ".py")
    spec = importlib.util.spec_from_file_location(f"taskseed_lm_eval_{abs(hash(str(path)))}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _is_function_ref(value: Any) -> bool:
    """`load_yaml(resolve_func=False)` leaves `!function utils.f` as "<task folder>/utils.f"."""
    return isinstance(value, str) and value.startswith("/") and "{{" not in value and "\n" not in value


def _render(value: Any, doc: dict[str, Any]) -> Any:
    from lm_eval.utils import apply_template

    if value is None:
        return None
    if callable(value):
        return value(doc)
    if isinstance(value, list):
        return value
    if isinstance(value, int):
        return value
    if _is_function_ref(value):
        return _function(value)(doc)
    if isinstance(value, str) and value in doc:
        return doc[value]
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        return apply_template(value, doc)
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        if value.strip().startswith("[") and value.strip().endswith("]"):
            try:  # a template that renders a list ("{{choices.text}}") renders its repr
                parsed = ast.literal_eval(value.strip())
                if isinstance(parsed, list):
                    return [str(v) for v in parsed]
            except (ValueError, SyntaxError):
                pass
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [str(v) for v in value if str(v).strip()]
    return []


def rendered_rows(cfg: dict[str, Any], rows: list[dict[str, Any]]) -> Iterator[list[str]]:
    """Per document (after `process_docs`): [prompt, *choices, target text]. Raises when the task
    cannot be rendered; the caller skips the task."""
    docs: Any = rows
    process = cfg.get("process_docs")
    if process:
        import datasets

        docs = list(_function(process)(datasets.Dataset.from_list(rows)) if _is_function_ref(process) else rows)
    for doc in docs:
        text = _strings(_render(cfg.get("doc_to_text"), doc))
        choices = _strings(_render(cfg.get("doc_to_choice"), doc))
        target = _render(cfg.get("doc_to_target"), doc)
        if isinstance(target, str) and target.strip().isdigit() and choices:
            target = int(target.strip())
        if isinstance(target, int) and 0 <= target < len(choices):
            target_strings = [choices[target]]
        else:
            target_strings = _strings(target if not isinstance(target, int) else str(target))
        # The prompt is followed by the answer as the model is scored on it (prompt + " " + choice).
        yield text + choices + target_strings
