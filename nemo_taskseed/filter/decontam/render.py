"""What lm-eval shows the model: a task's `process_docs`, `doc_to_text`, `doc_to_choice` and
`doc_to_target` applied to the raw rows, so the n-gram index also holds the rendered prompt.

The raw row is not always what the model sees: hellaswag's `process_docs` detokenizes its text
(" [title]" -> ". ", brackets dropped), MMLU and CommonsenseQA lay the options out as "A. ... B. ...".
A generated item that copies the rendered prompt shares n-grams with it that the raw row lacks.

Templates are rendered with lm-eval's own Jinja environment (`lm_eval.utils.apply_template`).
`!function` helpers come imported from `utils.lm_eval_yaml.template_config` (process_docs and
doc_to_* only), called for the tasks being indexed and no others. A task that cannot
be rendered (a missing dependency, a function that needs more than the row) is skipped and
counted; its raw rows are indexed all the same.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


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
    if callable(process):
        import datasets

        # A "Map" progress bar per split would fill the quiet terminal.
        was_enabled = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            docs = list(process(datasets.Dataset.from_list(rows)))
        finally:
            if was_enabled:
                datasets.enable_progress_bars()
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
