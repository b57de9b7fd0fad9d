"""Prompt templates are data: YAML files under `configs/prompts/`, rendered with `string.Template`.

A template file holds `id`, `version`, `output` (which parser reads the reply), `system` and `user`.
`$placeholders` are filled from the seed here; everything a prompt says lives in the file. Request
keys hash the rendered messages, so changed wording re-generates (the request cache never serves a
stale prompt); `version` goes into each record's lineage (which wording made it) and is bumped with
the wording, but alone changes no request key.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nemo_taskseed.errors import UserError
from nemo_taskseed.paths import config_dirs

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
BOOLEAN_WORDS = {"yes", "no", "true", "false"}
OUTPUT_KINDS = (
    "multiple_choice",
    "multiple_choice_context",
    "boolean",
    "math_word_problem",
    "code_with_tests",
    "short_answer",
    "reading_comprehension",
    "enrichment",
)


@dataclass(frozen=True)
class PromptTemplate:
    id: str
    version: str
    output: str
    system: str
    user: str
    path: str

    def render(self, **fields: Any) -> list[dict[str, str]]:
        try:
            user = string.Template(self.user).substitute(**fields)
            system = string.Template(self.system).substitute(**fields)
        except (KeyError, ValueError) as exc:
            raise UserError(f"{self.path}: placeholder {exc} has no value") from exc
        messages = [{"role": "system", "content": system.strip()}] if system.strip() else []
        messages.append({"role": "user", "content": user.strip()})
        return messages


def prompts_dir(cfg_dir: str | Path | None = None) -> Path:
    """`cfg_dir`, else `prompts/` of the first config tree that has one (a `taskseed init` project's, then
    the package's)."""
    if cfg_dir:
        return Path(cfg_dir)
    return next(d / "prompts" for d in config_dirs() if (d / "prompts").is_dir())


def load_templates(cfg_dir: str | Path | None = None) -> dict[str, PromptTemplate]:
    folder = prompts_dir(cfg_dir)
    if not folder.is_dir():
        raise UserError(f"prompt folder not found: {folder}")
    templates = {}
    for path in sorted(folder.glob("*.yaml")):
        data = OmegaConf.to_container(OmegaConf.load(path))
        missing = [k for k in ("id", "version", "output", "user") if k not in data]
        if missing:
            raise UserError(f"{path}: missing {', '.join(missing)}")
        if data["output"] not in OUTPUT_KINDS:
            raise UserError(f"{path}: output {data['output']!r} is not one of {', '.join(OUTPUT_KINDS)}")
        templates[data["id"]] = PromptTemplate(
            id=data["id"],
            version=str(data["version"]),
            output=data["output"],
            system=data.get("system") or "",
            user=data["user"],
            path=str(path),
        )
    return templates


def is_code_seed(seed: dict) -> bool:
    raw = seed.get("raw") or {}
    return bool(raw.get("test_list") or raw.get("test") and raw.get("entry_point"))


def is_boolean_seed(seed: dict) -> bool:
    options = seed.get("options") or []
    return len(options) == 2 and {str(o).strip().casefold() for o in options} <= BOOLEAN_WORDS


def math_solution(seed: dict) -> str | None:
    """The worked solution of a math seed, if any: gsm8k's `answer` with its `#### final` line, or
    a competition solution (MATH, minerva_math) that ends in `\\boxed{final}`."""
    raw = seed.get("raw") or {}
    for value in (raw.get("answer"), raw.get("solution"), raw.get("rationale"), seed.get("answer_text")):
        if isinstance(value, str) and ("####" in value or "\\boxed{" in value):
            return value
    return None


def is_competition_math(seed: dict) -> bool:
    """A seed whose worked solution gives its answer as `\\boxed{...}` (MATH-style)."""
    solution = math_solution(seed)
    return bool(solution) and "\\boxed{" in solution and "####" not in solution


def final_answer(seed: dict) -> str:
    """The short final answer: gsm8k-style targets carry the whole solution before `#### answer`;
    a boxed solution carries it in its last `\\boxed{}`."""
    from nemo_taskseed.registry.extractors import extract_boxed

    text = str(seed["answer_text"])
    if "####" in text:
        return text.split("####")[-1].strip()
    if "\\boxed{" in text:
        return extract_boxed(text) or text.strip()
    return text.strip()


def _looks_numeric(text: str) -> bool:
    t = text.strip().replace(",", "").lstrip("$").rstrip("%")
    try:
        float(t)
        return True
    except ValueError:
        return False


def select_template_id(seed: dict, overrides: dict[str, str] | None = None) -> str:
    """The template for a seed: explicit override by task or family, else by the seed's shape."""
    overrides = overrides or {}
    for key in (seed.get("task"), seed.get("family")):
        if key in overrides:
            return overrides[key]
    if is_code_seed(seed):
        return "code_with_tests"
    if seed["format"] == "multiple_choice":
        if is_boolean_seed(seed):
            return "boolean"
        return "multiple_choice_context" if seed.get("context") else "multiple_choice"
    if seed.get("context"):
        return "reading_comprehension"
    if is_competition_math(seed):
        # A worked LaTeX solution ending in \\boxed{}: shown whole, and asked for whole.
        return "competition_math"
    if math_solution(seed) or (seed.get("kind") == "reasoning" and _looks_numeric(final_answer(seed))):
        return "math_word_problem"
    return "short_answer"


def options_block(options: list[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))


def seed_block(seed: dict, template_id: str) -> str:
    """The seed as the model sees it, in the shape its template's reply asks for."""
    raw = seed.get("raw") or {}
    parts = []
    if template_id == "code_with_tests":
        parts.append(f"Task: {seed['question']}")
        code = raw.get("code") or raw.get("canonical_solution") or seed["answer_text"]
        parts.append(f"Solution:\n```python\n{str(code).strip()}\n```")
        tests = raw.get("test_list") or []
        if tests:
            parts.append("Tests:\n" + "\n".join(tests))
        return "\n".join(parts)
    if seed.get("context"):
        parts.append(f"Passage: {seed['context']}")
    parts.append(f"Question: {seed['question']}")
    if seed["format"] == "multiple_choice":
        parts.append("Options:\n" + options_block(seed["options"]))
        parts.append(f"Answer: {LETTERS[seed['answer_index']]}. {seed['answer_text']}")
    elif template_id in ("math_word_problem", "competition_math"):
        solution = math_solution(seed)
        if solution:
            parts.append(f"Solution: {solution.split('####')[0].strip()}")
        parts.append(f"Final answer: {final_answer(seed)}")
    else:
        parts.append(f"Answer: {seed['answer_text']}")
    return "\n".join(parts)


def seed_reply(seed: dict, output: str) -> dict[str, Any]:
    """The seed written as the reply a template asks for: shows the format with real content."""
    raw = seed.get("raw") or {}
    reply: dict[str, Any] = {}
    if seed.get("context") and output in ("multiple_choice_context", "reading_comprehension", "boolean"):
        reply["context"] = seed["context"]
    reply["question"] = seed["question"]
    if output in ("multiple_choice", "multiple_choice_context"):
        reply["correct_answer"] = seed["answer_text"]
        reply["distractors"] = [o for i, o in enumerate(seed["options"]) if i != seed["answer_index"]]
    elif output == "boolean":
        reply["answer"] = str(seed["answer_text"]).strip().casefold() in ("yes", "true")
    elif output == "math_word_problem":
        solution = math_solution(seed)
        reply["solution"] = solution.split("####")[0].strip() if solution else final_answer(seed)
        reply["final_answer"] = final_answer(seed)
    elif output == "code_with_tests":
        reply["code"] = str(raw.get("code") or raw.get("canonical_solution") or seed["answer_text"]).strip()
        reply["tests"] = list(raw.get("test_list") or [])
    else:
        reply["answer"] = seed["answer_text"]
    return reply


def seed_fields(seed: dict, template: PromptTemplate, examples: list[dict]) -> dict[str, Any]:
    num_options = len(seed.get("options") or [])
    examples_block = ""
    if examples:
        shown = "\n".join(json.dumps(seed_reply(e, template.output), ensure_ascii=False) for e in examples)
        examples_block = f"\nMore items of the same kind:\n{shown}\n"
    has_context = bool(seed.get("context"))
    return {
        "task": seed["task"],
        "seed_block": seed_block(seed, template.id),
        "seed_json": json.dumps(seed_reply(seed, template.output), ensure_ascii=False),
        "examples_block": examples_block,
        "num_options": num_options,
        "num_distractors": max(num_options - 1, 0),
        "context_instruction": ", with a new short passage that the question is about." if has_context else ".",
        "reply_shape": (
            '{"context": "...", "question": "...", "answer": true}'
            if has_context
            else '{"question": "...", "answer": true}'
        ),
    }


def item_block(item: dict) -> str:
    """A generated item as the enrichment prompt shows it."""
    parts = []
    if item.get("context"):
        parts.append(f"Passage: {item['context']}")
    parts.append(f"Question: {item['question']}")
    if item.get("tests"):
        parts.append("Tests:\n" + "\n".join(item["tests"]))
    if item["format"] == "multiple_choice":
        parts.append("Options:\n" + options_block(item["options"]))
        parts.append(f"Correct answer: {LETTERS[item['answer_index']]}. {item['answer_text']}")
    elif item.get("reference") and item.get("tests"):
        parts.append(f"Correct solution:\n```python\n{item['reference']}\n```")
    else:
        if item.get("reference"):
            parts.append(f"Worked solution: {item['reference']}")
        parts.append(f"Correct answer: {item['answer_text']}")
    return "\n".join(parts)


def enrich_fields(item: dict) -> dict[str, Any]:
    if item["format"] == "multiple_choice":
        wrong = [LETTERS[i] for i in range(len(item["options"])) if i != item["answer_index"]]
        alternatives = (
            f'one entry for each wrong option ({", ".join(wrong)}), with "option" its letter and '
            '"why_wrong" why it fails;'
        )
    else:
        alternatives = (
            'two common mistakes a student could make, with "option" the wrong answer they would '
            'reach and "why_wrong" why it is wrong;'
        )
    return {"item_block": item_block(item), "alternatives_instruction": alternatives}
