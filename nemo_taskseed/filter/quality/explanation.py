"""Does the enrichment explain THIS item's answer? Rule checks, no model.

An enrichment (stage 4) is a reasoning that should lead to the labelled answer, one "why wrong"
per wrong option, and background knowledge. A small or careless generator writes reasonings that
conclude another option, alternatives that only repeat the option ("The answer is B. water"),
or a background that is the answer letter. Such an item's question and answer may still be fine:
its label/answer documents stay, its reasoning/context documents go (or the whole item, by config).

Checks (each failure is one reason):
  reasoning_concludes_other_option   multiple choice: the option the reasoning picks (a stated
                                     letter, else the one option whose text its last sentence
                                     quotes) is not the label
  reasoning_concludes_other_answer   math: the reasoning's final number is not the item's answer
  reasoning_misses_answer            math: no number at all; short answer: the answer text does
                                     not occur in the reasoning
  reasoning_arithmetic_wrong         math: a calculation written in the reasoning is false
  alternatives_missing               multiple choice: some wrong option has no alternative
  alternative_for_correct_option     an alternative explains why the correct option is wrong
  alternative_restates_option        a why_wrong says nothing beyond its option's letter/text
  alternatives_repeat                two alternatives give the same why_wrong
  knowledge_restates_item            the knowledge adds fewer than `min_new_words` words that
                                     are not in the question, options or answer
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nemo_taskseed.config import section_settings
from nemo_taskseed.filter.checks import CheckContext, ItemCheckStage, register_check
from nemo_taskseed.filter.quality.heuristics import quality_off_warnings
from nemo_taskseed.filter.quality.items import wrong_calculations
from nemo_taskseed.registry import verifier_kind
from nemo_taskseed.registry.extractors import (
    LETTERS,
    extract_math_answer,
    math_equivalent,
    normalize_math_answer,
    normalize_short_answer,
)

# Words that carry no content of their own: the restatement checks ignore them. Plain English
# function words plus the phrases a template answer is made of ("the answer is option B").
_FILLER = frozenset(
    """
a an the and or but if of to in on at by for with from as is are was were be been being it its this that these
those there here which who whom what when where why how than then so such not no yes do does did can could will
would should may might must shall has have had i you he she we they them their our your his her my me us
answer answers correct option options choice choices because therefore thus hence since
""".split()
)

# A stated pick: "answer is B", "answer: (B)", "option B", "B is correct", a reasoning that starts "B."
_PICK_PATTERNS = (
    re.compile(r"(?i:answer|option|choice)\s*(?i:is|would be|:)?\s*\(?([A-Z])\b\)?(?![a-z'])"),
    re.compile(r"\b\(?([A-Z])\)?\s+(?i:is (?:the )?correct)\b"),
)
_LEADING_LETTER = re.compile(r"^\s*\(?([A-Z])[\).:]\s")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class ExplanationSettings:
    """`filter.quality.explanation` (configs/base/filter.yaml), plus what decides an item's
    verifier kind."""

    min_new_words: int  # knowledge must add at least this many content words
    min_why_wrong_words: int  # content words a why_wrong has beyond its option's own text
    families: Mapping[str, str] | None = None  # filter.verify.families (family -> verifier kind)
    task_kinds: Mapping[str, str] | None = None  # task -> the catalog's verifier kind (from the seeds)

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        families: Mapping[str, str] | None = None,
        task_kinds: Mapping[str, str] | None = None,
    ) -> ExplanationSettings:
        """From the full config or its `filter.quality.explanation` section."""
        names = ("min_new_words", "min_why_wrong_words")
        values = section_settings(cls, cfg, "filter.quality.explanation", names, strict=True, extra=("enabled",))
        return cls(
            int(values["min_new_words"]),
            int(values["min_why_wrong_words"]),
            dict(families or {}),
            dict(task_kinds or {}),
        )


def _content_words(text: str) -> list[str]:
    return [w for w in normalize_short_answer(text).split() if w not in _FILLER]


def picked_option(reasoning: str, options: list[str]) -> int | None:
    """The option a reasoning concludes: the LAST stated letter, else (no letter) the one option
    whose text its last sentence contains. None when it does not commit."""
    n = len(options)
    # The latest statement wins ("not A ... so the answer is C"); a reasoning may also open with it.
    located = sorted((m.start(), m.group(1)) for pat in _PICK_PATTERNS for m in pat.finditer(reasoning))
    lead = _LEADING_LETTER.match(reasoning)
    letter = located[-1][1] if located else (lead.group(1) if lead else None)
    if letter is not None and LETTERS.index(letter) < n:
        return LETTERS.index(letter)
    sentences = [s for s in _SENTENCE_END.split(reasoning.strip()) if s.strip()]
    if not sentences:
        return None
    last = f" {normalize_short_answer(sentences[-1])} "
    hits = [
        i for i, opt in enumerate(options) if normalize_short_answer(opt) and f" {normalize_short_answer(opt)} " in last
    ]
    # An option whose text contains another's (e.g. "oil" and "olive oil") is one hit, the longer.
    hits = [
        i
        for i in hits
        if not any(j != i and normalize_short_answer(options[i]) in normalize_short_answer(options[j]) for j in hits)
    ]
    return hits[0] if len(hits) == 1 else None


def _option_index(option: Any, options: list[str]) -> int | None:
    """An alternative's `option`: a letter ("B", "B.", "(B)"), "B. water", or the option text."""
    if not isinstance(option, str) or not option.strip():
        return None
    text = option.strip()
    m = re.match(r"^\(?([A-Z])\)?(?:[.):]\s*(.*))?$", text)
    if m and LETTERS.index(m.group(1)) < len(options):
        return LETTERS.index(m.group(1))
    norm = normalize_short_answer(text)
    for i, opt in enumerate(options):
        if normalize_short_answer(opt) == norm:
            return i
    return None


def explanation_failures(record: Mapping[str, Any], settings: ExplanationSettings) -> list[dict[str, Any]]:
    """Every inconsistency of a record's enrichment with its item (empty: consistent, or no enrichment)."""
    enrichment = record.get("enrichment")
    if not isinstance(enrichment, Mapping):
        return []
    reasoning = str(enrichment.get("reasoning") or "")
    alternatives = [a for a in enrichment.get("alternatives") or [] if isinstance(a, Mapping)]
    options = [str(o) for o in record.get("options") or []]
    kind = verifier_kind(
        str(record.get("family") or ""),
        str(record.get("format") or ""),
        settings.families,
        (settings.task_kinds or {}).get(str(record.get("task"))),
    )
    failures: list[dict[str, Any]] = []
    label = record.get("answer_index")
    if kind == "multiple_choice" and options and isinstance(label, int):
        failures += _choice_failures(reasoning, alternatives, options, label)
    elif kind == "math":
        failures += _math_failures(reasoning, str(record.get("answer_text") or ""))
    elif kind == "short_answer":
        target = normalize_short_answer(str(record.get("answer_text") or ""))
        if target and f" {target} " not in f" {normalize_short_answer(reasoning)} ":
            failures.append({"check": "reasoning_misses_answer", "expected": target})
    failures += _alternatives_failures(alternatives, options, settings)
    item_words = set(
        _content_words(" ".join([str(record.get("question") or ""), *options, str(record.get("answer_text") or "")]))
    )
    knowledge = str(enrichment.get("knowledge") or "")
    new_words = {w for w in _content_words(knowledge) if w not in item_words}
    if len(new_words) < settings.min_new_words:
        failures.append({"check": "knowledge_restates_item", "new_words": sorted(new_words), "text": knowledge[:200]})
    return failures


def _choice_failures(reasoning: str, alternatives: list, options: list[str], label: int) -> list[dict[str, Any]]:
    """The reasoning concludes the label; one alternative per wrong option, none for the label."""
    failures: list[dict[str, Any]] = []
    pick = picked_option(reasoning, options)
    if pick is not None and pick != label:
        failures.append({"check": "reasoning_concludes_other_option", "picked": LETTERS[pick], "label": LETTERS[label]})
    covered: set[int] = set()
    for i, alt in enumerate(alternatives):
        idx = _option_index(alt.get("option"), options)
        if idx == label:
            failures.append(
                {"check": "alternative_for_correct_option", "where": f"alternatives[{i}]", "option": LETTERS[label]}
            )
        elif idx is not None:
            covered.add(idx)
    missing = [LETTERS[i] for i in range(len(options)) if i != label and i not in covered]
    if missing:
        failures.append({"check": "alternatives_missing", "missing": missing})
    return failures


def _math_failures(reasoning: str, answer_text: str) -> list[dict[str, Any]]:
    """The reasoning reaches the item's answer (by equivalence) and calculates right."""
    failures: list[dict[str, Any]] = []
    target = normalize_math_answer(extract_math_answer(answer_text))
    concluded = normalize_math_answer(extract_math_answer(reasoning))
    if concluded is None:
        failures.append({"check": "reasoning_misses_answer", "expected": target})
    elif target is not None and not math_equivalent(concluded, target):
        failures.append({"check": "reasoning_concludes_other_answer", "concluded": concluded, "expected": target})
    wrong = list(wrong_calculations(reasoning))
    if wrong:
        failures.append({"check": "reasoning_arithmetic_wrong", "calculations": wrong[:5]})
    return failures


def _alternatives_failures(
    alternatives: list, options: list[str], settings: ExplanationSettings
) -> list[dict[str, Any]]:
    """Alternatives must say something beyond their option (all formats: generative ones list
    common mistakes, whose `option` is the mistaken answer), each something of its own."""
    failures: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, alt in enumerate(alternatives):
        why = str(alt.get("why_wrong") or "")
        idx = _option_index(alt.get("option"), options) if options else None
        own = set(_content_words(options[idx] if idx is not None else str(alt.get("option") or "")))
        new = [w for w in _content_words(why) if w not in own and not (len(w) == 1 and w.upper() in LETTERS)]
        if len(new) < settings.min_why_wrong_words:
            failures.append({"check": "alternative_restates_option", "where": f"alternatives[{i}]", "text": why[:200]})
        key = normalize_short_answer(why)
        if key and key in seen:
            failures.append(
                {"check": "alternatives_repeat", "where": f"alternatives[{i}]", "same_as": f"alternatives[{seen[key]}]"}
            )
        seen.setdefault(key, i)
    return failures


@dataclass
class ExplanationStage(ItemCheckStage):
    """The enrichment must explain the item's own answer (filter.quality.explanation)."""

    name: str = "explanation"
    settings: ExplanationSettings | None = None  # filter.quality.explanation (required)
    enrichment_failure: str = "strip"

    def item_failures(self, record: dict[str, Any]) -> list[tuple[str, bool, dict[str, Any]]]:
        return [(f["check"], True, f) for f in explanation_failures(record, self.settings)]


def _warnings(settings, facts) -> list[str]:
    if not settings.quality_on:
        return quality_off_warnings(settings, facts)
    if not settings.raw["quality"]["explanation"]["enabled"]:
        return ["explanation checks are off (filter.quality.explanation.enabled=false)"]
    return []


@register_check(
    "explanation",
    phase="screen",
    order=40,
    section="quality.explanation",
    report_column="checked",
    enabled=lambda s: bool(s.quality_on and s.raw["quality"]["explanation"]["enabled"]),
    warnings=_warnings,
)
def explanation_stage(ctx: CheckContext) -> ExplanationStage:
    return ExplanationStage(
        settings=ctx.settings.explanation, enrichment_failure=ctx.settings.raw["quality"]["enrichment_failure"]
    )
