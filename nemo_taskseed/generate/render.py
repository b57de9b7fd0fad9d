"""The pretraining document (`text`) of a generated item, one format per ablation variant.

    label      question block + "Answer: B"                       (multiple choice only: for a
                                                                    generative item it would be
                                                                    the answer document again)
    answer     question block + "Answer: <answer text>"           (MC: option text; math: the
                                                                    worked solution; code: the program)
    reasoning  question block + "Answer: <reasoning>" + "So the answer is ..." + why the
               alternatives fail (MC: one line per wrong option; generative: common mistakes)
    context    "Background: <knowledge>" + blank line + the reasoning document

The question block is the optional "Passage: ..." line, "Question: ...", then "A. ..." option
lines for multiple choice, or the assert tests for code. README (Generation) shows examples.
"""

from __future__ import annotations

from nemo_taskseed.generate.prompts import LETTERS
from nemo_taskseed.schema.generated import ENRICHED_VARIANTS, VARIANTS


def question_block(item: dict) -> str:
    parts = []
    if item.get("context"):
        parts.append(f"Passage: {item['context']}")
    parts.append(f"Question: {item['question']}")
    if item["format"] == "multiple_choice":
        parts.extend(f"{LETTERS[i]}. {o}" for i, o in enumerate(item["options"]))
    if item.get("tests"):
        parts.append("Your code should pass these tests:\n" + "\n".join(item["tests"]))
    return "\n".join(parts)


def _code(text: str) -> str:
    return f"```python\n{text.strip()}\n```"


def answer_display(item: dict) -> str:
    """The answer as the `reasoning` document's conclusion states it."""
    if item["format"] == "multiple_choice":
        return f"{LETTERS[item['answer_index']]}. {item['answer_text']}"
    if item.get("tests"):
        return "\n" + _code(item["answer_text"])
    return item["answer_text"]


def render_text(item: dict, variant: str, enrichment: dict | None) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    if variant in ENRICHED_VARIANTS and not enrichment:
        raise ValueError(f"variant {variant!r} needs an enrichment")
    block = question_block(item)
    is_mc = item["format"] == "multiple_choice"
    if variant == "label":
        label = LETTERS[item["answer_index"]] if is_mc else answer_display(item)
        return f"{block}\nAnswer: {label}"
    if variant == "answer":
        if item.get("tests"):
            answer = "\n" + _code(item["answer_text"])
        elif not is_mc and item.get("reference") and item["reference"].strip() != item["answer_text"].strip():
            # Math: the worked solution (it ends in the final answer), not the bare number.
            answer = item["reference"]
        else:
            answer = item["answer_text"]
        return f"{block}\nAnswer: {answer}"

    lines = [block, f"Answer: {enrichment['reasoning']}", f"So the answer is {answer_display(item)}"]
    alternatives = enrichment.get("alternatives") or []
    if alternatives:
        if is_mc:
            lines.append("Why the other options are wrong:")
            for alt in alternatives:
                letter = alt["option"]
                lines.append(f"- {letter}. {item['options'][LETTERS.index(letter)]}: {alt['why_wrong']}")
        else:
            lines.append("Common mistakes:")
            lines.extend(
                f"- {alt['option']}: {alt['why_wrong']}" if alt.get("option") else f"- {alt['why_wrong']}"
                for alt in alternatives
            )
    document = "\n".join(lines)
    if variant == "reasoning":
        return document
    return f"Background: {enrichment['knowledge']}\n\n{document}"
