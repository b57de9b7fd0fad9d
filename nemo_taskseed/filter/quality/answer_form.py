"""Does a generative item's answer give an answer? (the `answer_form` check)

A small generator often "answers" with a piece of its own question ("A baker makes 48 muffins and
sells them," for a question that begins with those words) or with a sentence that stops before it
concludes ("Each day, the baker sold 48 apples, but"). Both contain numbers, so the math rule
`math_answer_not_a_number` (filter/quality/items.py) lets them through, and a vote cannot help
when the reference answer itself is the fragment. For generative items other than code:

  answer_restates_question  the answer (at least `min_words` words) is a stretch of the question:
                            at least `restated_share` of its word 3-grams are the question's
                            (word order kept, so "The Eiffel Tower is in Paris" answering "Is the
                            Eiffel Tower in Paris or London?" is not a restatement)
  answer_incomplete         the answer ends on a comma or a word that cannot end one (a
                            conjunction or an article: "but", "and", "the"): it was cut off
  math_no_final_answer      math: an answer of more than `max_math_words` words with no final-answer
                            marker (`#### x`, `\\boxed{x}`, "the answer is", "= x"): a narration,
                            not a result

Every failure drops the whole item (its label/answer documents would teach the non-answer).
Calibrated on real rows (tests/test_filter_answer_form.py): every GSM8K and BoolQ row of the
fixtures, as a generated item, passes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nemo_taskseed.config import section_settings
from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.checks import CheckContext, ItemCheckStage, register_check
from nemo_taskseed.registry import verifier_kind
from nemo_taskseed.registry.extractors import normalize_short_answer

# Words a finished answer does not end on: conjunctions and articles. Not prepositions, which end
# real answers ("get tired of", "turn it on": 5 of 1,800 real rows when they were included).
_DANGLING = frozenset("and but or nor because although though whereas the a an".split())
_FINAL_MARKER = re.compile(r"####|\\boxed|\banswer\s*(?:is|:)|=\s*\S", re.IGNORECASE)


@dataclass(frozen=True)
class AnswerFormSettings:
    """`filter.quality.answer_form` (configs/base/filter.yaml holds the defaults)."""

    min_words: int  # shorter answers are not checked for restating (a name, a number)
    restated_share: float  # share of the answer's word 3-grams found in the question
    max_math_words: int  # a longer math answer needs a final-answer marker

    @classmethod
    def from_config(cls, cfg: Any) -> AnswerFormSettings:
        """From the full config or its `filter.quality.answer_form` section."""
        values = section_settings(cls, cfg, "filter.quality.answer_form", strict=True, extra=("enabled",))
        out = cls(int(values["min_words"]), float(values["restated_share"]), int(values["max_math_words"]))
        if out.min_words < 3:
            raise UserError(f"filter.quality.answer_form.min_words must be >= 3 (3-grams), got {out.min_words}")
        if not 0.0 < out.restated_share <= 1.0:
            raise UserError(f"filter.quality.answer_form.restated_share must be in (0, 1], got {out.restated_share}")
        if out.max_math_words < 1:
            raise UserError(f"filter.quality.answer_form.max_math_words must be >= 1, got {out.max_math_words}")
        return out


def _trigrams(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def answer_form_failures(
    record: Mapping[str, Any],
    settings: AnswerFormSettings,
    families: Mapping[str, str] | None = None,
    task_kinds: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every way a generative item's answer fails to be an answer (empty: it is one)."""
    if record.get("format") != "generative":
        return []
    kind = verifier_kind(
        str(record.get("family") or ""),
        str(record.get("format") or ""),
        families,
        (task_kinds or {}).get(str(record.get("task"))),
    )
    if kind not in ("math", "short_answer"):
        return []
    answer = str(record.get("answer_text") or "").strip()
    words = normalize_short_answer(answer).split()
    failures: list[dict[str, Any]] = []
    if len(words) >= settings.min_words:
        grams = _trigrams(words)
        question = _trigrams(normalize_short_answer(str(record.get("question") or "")).split())
        share = len(grams & question) / len(grams) if grams else 0.0
        if share >= settings.restated_share:
            failures.append({"check": "answer_restates_question", "share": round(share, 3), "answer": answer[:200]})
    tail = re.sub(r"[\s.…]+$", "", answer)
    last = tail.split()[-1].lower().strip("\"'()[]") if tail.split() else ""
    if tail.endswith((",", ";", ":")) or (len(words) > 1 and last in _DANGLING):
        failures.append({"check": "answer_incomplete", "answer": answer[:200]})
    if kind == "math" and len(answer.split()) > settings.max_math_words and not _FINAL_MARKER.search(answer):
        failures.append({"check": "math_no_final_answer", "words": len(answer.split()), "answer": answer[:200]})
    return failures


@dataclass
class AnswerFormStage(ItemCheckStage):
    """`answer_form_failures` on every generative item (filter.quality.answer_form)."""

    name: str = "answer_form"
    settings: AnswerFormSettings | None = None
    families: dict[str, str] = field(default_factory=dict)
    task_kinds: dict[str, str] = field(default_factory=dict)

    def item_failures(self, record: dict[str, Any]) -> list[tuple[str, bool, dict[str, Any]]]:
        return [
            (f["check"], False, f) for f in answer_form_failures(record, self.settings, self.families, self.task_kinds)
        ]


def _warnings(settings, facts) -> list[str]:
    if settings.quality_on and not settings.section("quality.answer_form").get("enabled"):
        return ["answer form checks are off (filter.quality.answer_form.enabled=false)"]
    return []


@register_check(
    "answer_form",
    phase="screen",
    order=35,
    section="quality.answer_form",
    report_column="checked",
    enabled=lambda s: bool(s.quality_on and s.section("quality.answer_form").get("enabled")),
    settings=AnswerFormSettings.from_config,
    warnings=_warnings,
)
def answer_form_stage(ctx: CheckContext) -> AnswerFormStage:
    return AnswerFormStage(
        settings=ctx.settings.check_settings["answer_form"],
        families=dict(ctx.settings.families),
        task_kinds=dict(ctx.settings.task_kinds),
    )
