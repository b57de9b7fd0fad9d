"""Math answers are compared by mathematical equivalence (registry/extractors.py `math_equivalent`,
math-verify): the vote counts an equivalent form for the reference, and the explanation check does
not call an equivalent conclusion a different answer."""

from __future__ import annotations

import pytest

from nemo_taskseed.config import load_config
from nemo_taskseed.filter.quality.explanation import ExplanationSettings, explanation_failures
from nemo_taskseed.filter.verify import VoteSettings, count_votes
from nemo_taskseed.registry import math_equivalent, normalize_math_answer


@pytest.mark.parametrize(
    "a, b, same",
    [
        (r"\frac{\sqrt2}{2}", r"\sqrt{2}/2", True),
        (r"\frac{1}{\sqrt{2}}", r"\frac{\sqrt{2}}{2}", True),
        (r"2\sqrt{3}", r"\sqrt{12}", True),
        ("x^2+2x+1", "(x+1)^2", True),
        (r"\dfrac{3}{4}", "0.75", True),  # the numeric path, no parser
        ("1,000", "$1000.00", True),
        (r"\frac{\sqrt2}{2}", r"\sqrt{3}/2", False),
        ("3", "4", False),
        (r"\pi", "3.14", False),  # exact, not rounded
        ("the baker sold 48 apples", "48", False),  # prose is no expression
    ],
)
def test_equivalent_forms(a, b, same):
    assert math_equivalent(normalize_math_answer(a), normalize_math_answer(b)) is same


def _record(answer: str) -> dict:
    return {
        "format": "generative",
        "family": "hendrycks_math",
        "question": "What is $\\sin 45^\\circ$?",
        "answer_text": answer,
        "reference": f"The sine of 45 degrees is $\\boxed{{{answer}}}$.",
    }


def test_the_vote_counts_an_equivalent_form_for_the_reference():
    settings = VoteSettings.from_config(load_config(), k=5)
    outputs = ["So the answer is \\boxed{\\sqrt{2}/2}."] * 3 + ["\\boxed{1}"] * 2
    result = count_votes(_record("\\frac{\\sqrt2}{2}"), "math", settings, outputs)
    assert result.passed and result.agreement == 0.6 and result.votes.count(result.target) == 3
    other = count_votes(_record("\\frac{\\sqrt3}{2}"), "math", settings, outputs)
    assert not other.passed and other.agreement == 0.0


def test_an_equivalent_conclusion_is_no_other_answer():
    settings = ExplanationSettings.from_config(load_config())
    record = _record("\\frac{\\sqrt{2}}{2}")
    record["enrichment"] = {
        "reasoning": "In a right isosceles triangle the legs are 1/sqrt2 of the hypotenuse, so the answer is \\boxed{\\frac{1}{\\sqrt{2}}}.",
        "alternatives": [],
        "knowledge": "Sine is the ratio of the opposite side to the hypotenuse in a right triangle.",
    }
    assert "reasoning_concludes_other_answer" not in {f["check"] for f in explanation_failures(record, settings)}
    record["enrichment"]["reasoning"] = "So the answer is \\boxed{\\frac{\\sqrt{3}}{2}}."
    assert "reasoning_concludes_other_answer" in {f["check"] for f in explanation_failures(record, settings)}
