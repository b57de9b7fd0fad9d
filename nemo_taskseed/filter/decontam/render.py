"""What lm-eval shows the model: a task's `process_docs`, `doc_to_text`, `doc_to_choice` and
`doc_to_target` applied to the raw rows, so the n-gram index also holds the rendered prompt.

The raw row is not always what the model sees: hellaswag's `process_docs` detokenizes its text
(" [title]" -> ". ", brackets dropped), MMLU and CommonsenseQA lay the options out as "A. ... B. ...".
A generated item that copies the rendered prompt shares n-grams with it that the raw row lacks.

Rows are rendered by lm-eval's own `ConfigurableTask` over the rows we read (`seeds.normalize.offline_task`,
the same offline task normalization uses).
`!function` helpers come imported from `utils.lm_eval_yaml.template_config` (process_docs and
doc_to_* only), called for the tasks being indexed and no others. A task that cannot
be rendered (a missing dependency, a function that needs more than the row) is skipped and
counted; its raw rows are indexed all the same.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [str(v) for v in value if str(v).strip()]
    return []


@dataclass(frozen=True)
class RenderedDoc:
    """One document as lm-eval shows it: the prompt, the choices, the target as text."""

    prompt: list[str]
    choices: list[str]
    target: list[str]

    @property
    def strings(self) -> list[str]:
        # The prompt is followed by the answer as the model is scored on it (prompt + " " + choice).
        return self.prompt + self.choices + self.target

    @property
    def answer(self) -> str:
        return self.target[0] if self.target else ""


def rendered_rows(cfg: dict[str, Any], rows: list[dict[str, Any]]) -> Iterator[RenderedDoc]:
    """Per document (after `process_docs`), its rendering. Raises when the task cannot be rendered;
    the caller skips the task."""
    import datasets

    from nemo_taskseed.seeds.normalize import offline_task

    # A "Map" progress bar per split would fill the quiet terminal.
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        task = offline_task(cfg, "test", rows)
        docs = list(task.test_docs())
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
    for doc in docs:
        text = _strings(task.doc_to_text(doc))
        choices = _strings(task.doc_to_choice(doc)) if cfg.get("doc_to_choice") is not None else []
        target = task.doc_to_target(doc)
        if isinstance(target, int) and 0 <= target < len(choices):
            target_strings = [choices[target]]
        else:
            target_strings = _strings(target if not isinstance(target, int) else str(target))
        yield RenderedDoc(text, choices, target_strings)
