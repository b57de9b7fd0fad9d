"""Strict parsing of model replies into items, with a reason for every rejection.

Replies are requested under a JSON schema (`reply_schema`) when the backend supports structured
outputs; parsing is still tolerant (code fences, prose around the object, an `options`+`answer`
shape instead of `correct_answer`+`distractors`), because endpoints without constrained decoding
exist. Every failure is a `Rejected(reason, detail)`; nothing here raises on bad model output.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from nemo_taskseed.generate.prompts import LETTERS
from nemo_taskseed.utils.text import normalize_text as normalize  # copy/duplicate checks use the filter's rule

# Reasons a candidate is dropped (summary keys; README (Generation) lists them).
REASONS = (
    "invalid_json",
    "missing_field",
    "empty_text",
    "question_too_short",
    "wrong_option_count",
    "duplicate_options",
    "answer_not_in_options",
    "copy_of_seed",
    "duplicate",
    "bad_tests",
    "code_syntax_error",
    "enrichment_invalid_json",
    "enrichment_empty",
    "enrichment_no_knowledge",
)

_STR = {"type": "string", "minLength": 1, "maxLength": 1200}
_SHORT = {"type": "string", "minLength": 1, "maxLength": 300}


@dataclass
class Rejected:
    reason: str
    detail: str = ""


def reply_schema(output: str, num_options: int = 0, has_context: bool = False) -> dict[str, Any]:
    """The JSON schema the reply of a template's `output` kind must follow (constrained decoding)."""
    props: dict[str, Any]
    if output in ("multiple_choice", "multiple_choice_context"):
        props = {
            "question": _STR,
            "correct_answer": _SHORT,
            "distractors": {"type": "array", "items": _SHORT, "minItems": num_options - 1, "maxItems": num_options - 1},
        }
        if output == "multiple_choice_context":
            props = {"context": _STR, **props}
    elif output == "boolean":
        props = {"question": _STR, "answer": {"type": "boolean"}}
        if has_context:
            props = {"context": _STR, **props}
    elif output == "math_word_problem":
        props = {
            "question": _STR,
            "solution": _STR,
            "final_answer": {"type": "string", "minLength": 1, "maxLength": 40},
        }
    elif output == "code_with_tests":
        props = {
            "question": _STR,
            "code": {"type": "string", "minLength": 1, "maxLength": 2000},
            "tests": {"type": "array", "items": _SHORT, "minItems": 1, "maxItems": 5},
        }
    elif output == "short_answer":
        props = {"question": _STR, "answer": _SHORT}
    elif output == "reading_comprehension":
        props = {"context": _STR, "question": _STR, "answer": _SHORT}
    elif output == "enrichment":
        # Bounded strings make the constrained reply close within ~400 tokens (max_tokens 512).
        props = {
            "reasoning": {"type": "string", "minLength": 1, "maxLength": 800},
            "alternatives": {
                "type": "array",
                "maxItems": max(num_options - 1, 2),
                "items": {
                    "type": "object",
                    "properties": {
                        "option": {"type": "string", "maxLength": 120},
                        "why_wrong": {"type": "string", "minLength": 1, "maxLength": 200},
                    },
                    "required": ["option", "why_wrong"],
                    "additionalProperties": False,
                },
            },
            "knowledge": {"type": "string", "minLength": 1, "maxLength": 500},
        }
    else:
        raise ValueError(f"unknown output kind {output!r}")
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


# ---------------------------------------------------------------------------------------------


def extract_json(text: str) -> dict | None:
    """The first JSON object in `text`: the whole reply, a fenced block, or a balanced {...} span."""
    text = (text or "").strip()
    candidates = [text]
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fence:
        candidates.append(fence.group(1))
    start = text.find("{")
    if start >= 0:
        depth, in_str, esc = 0, False, False
        for i, ch in enumerate(text[start:], start):
            if in_str:
                esc = ch == "\\" and not esc
                if ch == '"' and not esc:
                    in_str = False
                continue
            if ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    candidates.append(text[start : i + 1])
                    break
    for c in candidates:
        try:
            obj = json.loads(c)
        except (ValueError, TypeError):
            continue
        if isinstance(obj, dict):
            return obj
    return None


def similar(a: str, b: str) -> float:
    na, nb = normalize(a), normalize(b)
    if not na or not nb:
        return 0.0
    return SequenceMatcher(None, na, nb, autojunk=False).ratio()


def _text(obj: dict, key: str) -> str | Rejected:
    if key not in obj:
        return Rejected("missing_field", key)
    value = obj[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return Rejected("missing_field", f"{key} is {type(value).__name__}")
    value = value.strip()
    if not value:
        return Rejected("empty_text", key)
    return value


def answer_position(seed_id: str, sample_index: int, num_options: int) -> int:
    """Where the correct option goes: deterministic, and uniform over a seed's samples and over seeds."""
    return (int(seed_id, 16) + sample_index) % num_options


def _choices(obj: dict, num_options: int) -> tuple[str, list[str]] | Rejected:
    """(correct, distractors) from either reply shape."""
    if "correct_answer" in obj or "distractors" in obj:
        correct = _text(obj, "correct_answer")
        if isinstance(correct, Rejected):
            return correct
        distractors = obj.get("distractors")
        if not isinstance(distractors, list):
            return Rejected("missing_field", "distractors")
    elif "options" in obj and "answer" in obj:
        options = obj["options"]
        if not isinstance(options, list):
            return Rejected("missing_field", "options")
        options = [str(o).strip() for o in options]
        answer = str(obj["answer"]).strip()
        if len(answer) == 1 and answer.upper() in LETTERS[: len(options)]:
            index = LETTERS.index(answer.upper())
        else:
            matches = [i for i, o in enumerate(options) if normalize(o) == normalize(answer)]
            if not matches:
                return Rejected("answer_not_in_options", answer[:80])
            index = matches[0]
        correct, distractors = options[index], options[:index] + options[index + 1 :]
    else:
        return Rejected("missing_field", "correct_answer/distractors")
    distractors = [str(d).strip() for d in distractors]
    if any(not d for d in distractors):
        return Rejected("empty_text", "distractor")
    if len(distractors) != num_options - 1:
        return Rejected("wrong_option_count", f"{len(distractors) + 1} options, want {num_options}")
    if normalize(correct) in {normalize(d) for d in distractors}:
        return Rejected("answer_not_in_options", "correct answer repeated among distractors")
    if len({normalize(d) for d in distractors}) != len(distractors) or any(not normalize(d) for d in distractors):
        return Rejected("duplicate_options")
    return correct, distractors


def _code_checks(code: str, tests: list) -> Rejected | None:
    if not tests or not all(isinstance(t, str) and t.strip().startswith("assert") for t in tests):
        return Rejected("bad_tests", "every test must be an assert statement")
    for name, src in [("code", code), *((f"tests[{i}]", t) for i, t in enumerate(tests))]:
        try:
            compile(src, f"<generated {name}>", "exec")
        except (SyntaxError, ValueError) as exc:
            return Rejected("code_syntax_error", f"{name}: {exc}")
    return None


def parse_item(output: str, raw: str, seed: dict, sample_index: int, *, min_question_words: int = 3) -> dict | Rejected:
    """The item fields of one reply (question, context, options, answer_index, answer_text,
    reference, tests), or why it was rejected."""
    obj = extract_json(raw)
    if obj is None:
        return Rejected("invalid_json", raw[:80])
    question = _text(obj, "question")
    if isinstance(question, Rejected):
        return question
    if len(normalize(question).split()) < min_question_words:
        return Rejected("question_too_short", question[:80])
    context = None
    if output in ("multiple_choice_context", "reading_comprehension") or (output == "boolean" and "context" in obj):
        context = _text(obj, "context")
        if isinstance(context, Rejected):
            return context
    item = {
        "question": question,
        "context": context,
        "options": None,
        "answer_index": None,
        "reference": None,
        "tests": None,
        "format": "generative",
    }
    answer = _answer_fields(output, obj, seed, sample_index)
    if isinstance(answer, Rejected):
        return answer
    item.update(answer)
    return item


def _answer_fields(output: str, obj: dict, seed: dict, sample_index: int) -> dict | Rejected:
    """The answer part of an item (format, options, answer_index, answer_text, reference, tests:
    those the output kind sets), or why the reply's answer was rejected."""
    if output in ("multiple_choice", "multiple_choice_context"):
        return _multiple_choice_answer(obj, seed, sample_index)
    if output == "boolean":
        return _boolean_answer(obj, seed)
    if output == "math_word_problem":
        return _math_answer(obj)
    if output == "code_with_tests":
        return _code_answer(obj)
    if output in ("short_answer", "reading_comprehension"):
        answer = _text(obj, "answer")
        if isinstance(answer, Rejected):
            return answer
        return {"answer_text": answer}
    raise ValueError(f"not an item output kind: {output!r}")


def _multiple_choice_answer(obj: dict, seed: dict, sample_index: int) -> dict | Rejected:
    """As many options as the seed has, the correct one at its deterministic position."""
    num_options = len(seed["options"])
    choices = _choices(obj, num_options)
    if isinstance(choices, Rejected):
        return choices
    correct, distractors = choices
    pos = answer_position(seed["id"], sample_index, num_options)
    options = distractors[:pos] + [correct] + distractors[pos:]
    return {"format": "multiple_choice", "options": options, "answer_index": pos, "answer_text": correct}


def _boolean_answer(obj: dict, seed: dict) -> dict | Rejected:
    """True/false (or yes/no) as the index of the seed's matching option."""
    answer = obj.get("answer")
    if isinstance(answer, str) and normalize(answer) in ("yes", "true", "no", "false"):
        answer = normalize(answer) in ("yes", "true")
    if not isinstance(answer, bool):
        return Rejected("missing_field", "answer must be true or false")
    options = list(seed["options"])
    wanted = ("yes", "true") if answer else ("no", "false")
    index = next(i for i, o in enumerate(options) if normalize(o) in wanted)
    return {"format": "multiple_choice", "options": options, "answer_index": index, "answer_text": options[index]}


def _math_answer(obj: dict) -> dict | Rejected:
    """The final answer, with the worked solution as reference."""
    solution = _text(obj, "solution")
    final = _text(obj, "final_answer")
    for value in (solution, final):
        if isinstance(value, Rejected):
            return value
    return {"answer_text": final, "reference": solution}


def _code_answer(obj: dict) -> dict | Rejected:
    """The code (answer and reference) and its assert tests, all of which must compile."""
    code = _text(obj, "code")
    if isinstance(code, Rejected):
        return code
    tests = obj.get("tests")
    tests = [t.strip() for t in tests if isinstance(t, str)] if isinstance(tests, list) else []
    bad = _code_checks(code, tests)
    if bad:
        return bad
    return {"answer_text": code, "reference": code, "tests": tests}


def is_copy(item: dict, seed: dict, threshold: float) -> bool:
    """The item restates the seed (question, or code task) instead of making a new one."""
    if similar(item["question"], seed["question"]) >= threshold:
        return True
    return bool(item.get("context") and seed.get("context") and similar(item["context"], seed["context"]) >= threshold)


def parse_enrichment(raw: str, item: dict) -> dict | Rejected:
    """{reasoning, alternatives[{option, why_wrong}], knowledge} of one enrichment reply."""
    obj = extract_json(raw)
    if obj is None:
        return Rejected("enrichment_invalid_json", raw[:80])
    reasoning = obj.get("reasoning")
    if not isinstance(reasoning, str) or not reasoning.strip():
        return Rejected("enrichment_empty", "reasoning")
    knowledge = obj.get("knowledge")
    knowledge = knowledge.strip() if isinstance(knowledge, str) else ""
    alternatives = []
    wrong_letters = set()
    if item["format"] == "multiple_choice":
        wrong_letters = {LETTERS[i] for i in range(len(item["options"])) if i != item["answer_index"]}
    seen = set()
    for alt in obj.get("alternatives") or []:
        if not isinstance(alt, dict):
            continue
        why = str(alt.get("why_wrong") or "").strip()
        option = str(alt.get("option") or "").strip() or None
        if not why:
            continue
        if item["format"] == "multiple_choice":
            # Keep explanations of wrong options only, once each, in letter order.
            letter = (option or "").strip(" .)").upper()[:1]
            if letter not in wrong_letters or letter in seen:
                continue
            seen.add(letter)
            option = letter
        alternatives.append({"option": option, "why_wrong": why})
    if item["format"] == "multiple_choice":
        alternatives.sort(key=lambda a: a["option"])
    return {"reasoning": reasoning.strip(), "alternatives": alternatives, "knowledge": knowledge}
