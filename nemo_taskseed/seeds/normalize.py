"""Stage 2: normalize any lm-eval task's rows into the unified seed schema with the task's own templates.

The task's `process_docs`, `doc_to_text`, `doc_to_choice` and `doc_to_target` (Jinja or `!function`)
run through lm-eval's own `ConfigurableTask`, so a new family needs no adapter here. What lm-eval
does not say — which field is the question, which the passage, what a letter option means — is
inferred from the template's variables and the config's field-name lists (configs/base/seeds.yaml).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from nemo_taskseed.schema import SEED_SCHEMA_VERSION, content_id

ROW_COLUMN = "_taskseed_row"
_LETTER = re.compile(r"^\(?([A-Z]|[1-9])\)?[.:]?$")
_PROMPT_OPTION = re.compile(r"^\s*\(?([A-Z])[.):]\s+(.+?)\s*$", re.MULTILINE)
_SCAFFOLD_HEAD = re.compile(r"^\s*(question|q|problem|query)\s*:\s*", re.IGNORECASE)
_SCAFFOLD_TAIL = re.compile(r"\s*(answer|a|solution)\s*:\s*$", re.IGNORECASE)


def separate_question_from_context(question: str, context: str | None) -> tuple[str, str | None]:
    """A question that repeats its context (dialogue tasks whose prompt is the whole dialogue)
    would be shown twice to the generator and teach nothing new. The question becomes what the
    prompt adds to the context; when it adds nothing, the last line of the context (the turn to
    respond to) is the question and the lines before it the context."""
    if not context:
        return question, context
    if context in question:
        rest = question.replace(context, " ").strip()
        rest = _SCAFFOLD_TAIL.sub("", _SCAFFOLD_HEAD.sub("", rest)).strip()
        if rest and any(ch.isalnum() for ch in rest):
            return rest, context
        question = context
    if question.strip() == context.strip():
        lines = [line for line in context.splitlines() if line.strip()]
        if len(lines) >= 2:
            return lines[-1].strip(), "\n".join(lines[:-1]).strip()
    return question, context


class NormalizeError(Exception):
    def __init__(self, code: str, reason: str, field: str | None = None):
        super().__init__(reason)
        self.code, self.reason, self.field = code, reason, field


@dataclass
class FieldRules:
    question_fields: list[str]
    context_fields: list[str]
    letter_option_sources: list[str]

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> FieldRules:
        return cls(list(cfg["question_fields"]), list(cfg["context_fields"]), list(cfg["letter_option_sources"]))


def _template_variables(template: Any) -> set[str] | None:
    """Top-level variables a Jinja template (or a bare feature name) reads; None for functions."""
    if not isinstance(template, str):
        return None
    import jinja2
    from jinja2 import meta

    if "{{" not in template and "{%" not in template:
        return {template}
    try:
        return set(meta.find_undeclared_variables(jinja2.Environment().parse(template)))
    except jinja2.TemplateSyntaxError:
        return None


def _lookup(doc: dict[str, Any], dotted: str) -> Any:
    value: Any = doc
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


_JSON_SCALARS = (str, int, float, bool, type(None))


def _jsonable(value: Any) -> Any:
    """`value` with anything JSON cannot hold (dates, bytes, numpy scalars) turned into strings.

    Dataset rows are almost always plain Python already, so this walks instead of round-tripping
    through json.dumps/loads (which cost a third of normalization time).
    """
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def serve_rows_offline(cfg: dict[str, Any], split: str, dataset: Any) -> dict[str, Any]:
    """A task config that reads `dataset` (a DatasetDict holding `split`) as its only split, with
    no few-shot and no scoring: what normalization (and bench/bench_seeds.py's baseline) hands lm-eval."""
    cfg.update(
        {
            # Our rows, already read and conformed; lm-eval's own loader would need the hub.
            "custom_dataset": lambda **_: dataset,
            "dataset_kwargs": None,
            "training_split": split,
            "test_split": split,
            "validation_split": None,
            "fewshot_split": None,
            "fewshot_config": None,
            "num_fewshot": 0,
            # Scoring config is irrelevant to normalization and may load metrics from the hub.
            "metric_list": None,
            "filter_list": None,
            "process_results": None,
        }
    )
    return cfg


def offline_task(cfg: dict[str, Any], split: str, docs: list[dict[str, Any]]):
    """lm-eval's own `ConfigurableTask` over rows we already read (`serve_rows_offline`): its
    `test_docs()` are the rows after `process_docs`, and its `doc_to_*` render them as lm-eval does."""
    import datasets
    from lm_eval.api.task import ConfigurableTask

    from nemo_taskseed.compat import cache_lm_eval_templates

    cache_lm_eval_templates()
    cfg = {k: v for k, v in cfg.items() if k not in ("tag", "group", "task_list", "include")}
    serve_rows_offline(cfg, split, datasets.DatasetDict({split: datasets.Dataset.from_list(docs)}))
    cfg.setdefault("metadata", {})
    return ConfigurableTask(config=cfg)


class LmEvalTemplates:
    """One subtask's lm-eval templates, built offline over rows we already read."""

    def __init__(self, catalog_row: dict[str, Any], docs: list[dict[str, Any]], rules: FieldRules):
        from nemo_taskseed.utils.lm_eval_yaml import template_config

        self.row = catalog_row
        self.rules = rules
        # Importing the task's template functions happens here, for collected tasks only.
        cfg = template_config(catalog_row["yaml_path"])
        self._variables = {
            "question": _template_variables(cfg.get("doc_to_text")),
        }
        self.task = offline_task(cfg, catalog_row["split"], docs)
        self.is_multiple_choice = catalog_row["format"] == "multiple_choice"

    def processed_docs(self) -> list[dict[str, Any]]:
        """Docs after the task's `process_docs` (which may drop, add or rewrite rows)."""
        return list(self.task.test_docs())

    # ---- field inference -------------------------------------------------------------------
    def _pick(self, doc: dict[str, Any], names: list[str], prompt: str, exclude: str | None = None) -> str | None:
        variables = self._variables["question"]
        for name in names:
            if name == exclude or not isinstance(doc.get(name), str) or not doc[name].strip():
                continue
            if variables is not None:
                if name in variables:
                    return name
            elif not prompt or doc[name].strip() in prompt:
                # No template to read and no prompt (multiple-input tasks): the first present field.
                return name
        return None

    def _semantic_options(self, doc: dict[str, Any], choices: list[str], prompt: str) -> list[str]:
        """Letter choices (mmlu, commonsense_qa) mean options listed elsewhere in the doc or prompt."""
        if not all(isinstance(c, str) and _LETTER.match(c.strip()) for c in choices):
            return [str(c) for c in choices]
        for path in self.rules.letter_option_sources:
            value = _lookup(doc, path)
            if isinstance(value, list) and len(value) == len(choices) and all(isinstance(v, str) for v in value):
                return list(value)
        listed = dict(_PROMPT_OPTION.findall(prompt))
        letters = [_LETTER.match(c.strip()).group(1) for c in choices]
        if all(letter in listed for letter in letters):
            return [listed[letter] for letter in letters]
        raise NormalizeError(
            "letter_only_options", f"choices are letters {choices} and no option text was found", "options"
        )

    def _answer_index(self, target: Any, choices: list[str], options: list[str]) -> int:
        if isinstance(target, list):
            if len(target) != 1:
                raise NormalizeError(
                    "multiple_targets", f"multiple-choice target is a list of {len(target)}", "answer_index"
                )
            target = target[0]
        if isinstance(target, bool):
            target = int(target)
        if isinstance(target, str):
            stripped = target.strip()
            if stripped in [c.strip() for c in choices]:
                return [c.strip() for c in choices].index(stripped)
            if stripped in [o.strip() for o in options]:
                return [o.strip() for o in options].index(stripped)
            if stripped.lstrip("-").isdigit():
                target = int(stripped)
            else:
                raise NormalizeError(
                    "target_not_in_choices", f"target {target!r} is not among the choices", "answer_index"
                )
        if not isinstance(target, int):
            raise NormalizeError("bad_target", f"target of type {type(target).__name__}", "answer_index")
        if not 0 <= target < len(options):
            raise NormalizeError(
                "answer_out_of_range", f"answer index {target} out of range for {len(options)} options", "answer_index"
            )
        return target

    # ---- one doc ---------------------------------------------------------------------------
    def normalize(self, doc: dict[str, Any]) -> dict[str, Any]:
        row_index = doc.get(ROW_COLUMN)
        doc = {k: v for k, v in doc.items() if k != ROW_COLUMN}
        try:
            text = self.task.doc_to_text(doc)
            target = self.task.doc_to_target(doc)
            choices = self.task.doc_to_choice(doc) if self.is_multiple_choice else None
        except Exception as exc:  # a template may fail in any way on a malformed row
            raise NormalizeError("template_error", f"lm-eval template failed: {type(exc).__name__}: {exc}") from exc

        multiple_input = isinstance(text, int) and choices is not None
        prompt = "" if multiple_input else str(text)
        q_field = self._pick(doc, self.rules.question_fields, prompt)
        c_field = self._pick(doc, self.rules.context_fields, prompt, exclude=q_field)
        if q_field:
            question = doc[q_field].strip()
        elif prompt.strip():
            # No known question field: the rendered prompt minus its "Question:/Answer:" scaffolding.
            question = _SCAFFOLD_TAIL.sub("", _SCAFFOLD_HEAD.sub("", prompt)).strip()
        else:
            raise NormalizeError("no_question", "no question field and an empty prompt", "question")
        if not question:
            raise NormalizeError("empty_question", "question is empty", "question")
        context = doc[c_field].strip() if c_field else None
        question, context = separate_question_from_context(question, context)

        if self.is_multiple_choice:
            if not isinstance(choices, list) or len(choices) < 2:
                raise NormalizeError("bad_choices", f"doc_to_choice gave {choices!r}", "options")
            options = [str(c) for c in choices] if multiple_input else self._semantic_options(doc, choices, prompt)
            index = text if multiple_input else self._answer_index(target, choices, options)
            if not 0 <= index < len(options):
                raise NormalizeError(
                    "answer_out_of_range",
                    f"answer index {index} out of range for {len(options)} options",
                    "answer_index",
                )
            answer_text = options[index]
            if not answer_text.strip():
                raise NormalizeError("empty_answer", "the correct option is empty", "answer_text")
            references = [answer_text]
            if multiple_input:
                prompt = question
        else:
            options, index = None, None
            references = [str(t) for t in target] if isinstance(target, list) else [str(target)]
            references = [r for r in references if r.strip()]
            if not references:
                raise NormalizeError("empty_answer", "doc_to_target gave an empty reference", "answer_text")
            answer_text = references[0]

        r = self.row
        return {
            "schema_version": SEED_SCHEMA_VERSION,
            "id": content_id(r["task"], question, context, options, answer_text),
            "family": r["family"],
            "task": r["task"],
            "split": r["split"],
            "kind": r["kind"],
            "format": r["format"],
            "output_type": r["output_type"],
            # The answer check the catalog derived for this subtask (catalog/verifiers.py).
            "verifier": r.get("verifier"),
            "question": question,
            "context": context,
            "options": options,
            "answer_index": index,
            "answer_text": answer_text,
            "references": references,
            "prompt": prompt,
            "license": r["license"],
            "source": {
                "dataset_path": r["dataset_path"],
                "dataset_name": r["dataset_name"],
                "split": r["split"],
                "row": row_index,
                "file": r.get("_source_file"),
            },
            "raw": _jsonable(doc),
        }
