"""Rule checks on a generated item itself (no model): is it a well-formed question?

  options_duplicate     multiple choice: two options are the same once case, punctuation,
                        articles and other filler words are dropped ("Elephant." / "the
                        elephant"): two right answers, or a giveaway. Word order counts:
                        "A, B, C" and "C, B, A" are different answers (orderings).
  answer_in_question    multiple choice: the correct option restates the question (their
                        content words, at least `min_answer_words`, overlap by Jaccard >= 0.8:
                        "The animal that can't speak is the whale." / "The whale is the animal
                        that can't speak.")
  math_answer_not_a_number   math: the item's answer has no number to check against
  arithmetic_wrong      math: a written calculation is false: a GSM8K calculator annotation
                        `<<48/6=8>>` or an inline `2.5 * 6 = 3` (in the answer or the worked
                        solution; in the reasoning it is an enrichment failure, see explanation)

Every failure drops the whole item: its label/answer documents would teach the flaw too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from nemo_taskseed.filter.checks import CheckContext, ItemCheckStage, register_check
from nemo_taskseed.filter.quality.heuristics import quality_off_warnings
from nemo_taskseed.registry import verifier_kind
from nemo_taskseed.registry.extractors import extract_math_answer, normalize_math_answer, normalize_short_answer

_ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>]+)>>")
_UNSIGNED = r"\$?(?:\d[\d,]*(?:\.\d+)?|\.\d+)"
_NUM = rf"-?{_UNSIGNED}"
_OP = r"[-+*/x×÷]"
# "a op b [op c ...] = r": at least one operator; the result is the first number after "=".
_INLINE = re.compile(rf"({_NUM}(?:\s*{_OP}\s*{_UNSIGNED})+)\s*=\s*({_NUM})")
_TOKEN = re.compile(rf"{_UNSIGNED}|{_OP}")
_FILLER = frozenset("a an the and or of to in on at by for with is are was were be it its this that".split())


def _content(text: str) -> tuple[str, ...]:
    """Content words in order: "A, B, C" and "C, B, A" are different options (orderings)."""
    return tuple(w for w in normalize_short_answer(text).split() if w not in _FILLER)


def _number(text: str) -> Fraction | None:
    s = text.strip().replace("$", "").replace(",", "")
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def _evaluate(expression: str) -> Fraction | None:
    """Exact value of + - * / over numbers (precedence, no parentheses, an optional leading
    minus); None if the text is not that shape."""
    compact = expression.replace(" ", "")
    negative = compact.startswith("-")
    tokens = _TOKEN.findall(compact[1:] if negative else compact)
    if not tokens or "".join(tokens) != (compact[1:] if negative else compact):
        return None
    values: list[Fraction] = []
    ops: list[str] = []
    for i, tok in enumerate(tokens):
        if i % 2 == 0:
            value = _number(tok)
            if value is None:
                return None
            values.append(value)
        elif tok in "-+*/x×÷":
            ops.append({"x": "*", "×": "*", "÷": "/"}.get(tok, tok))
        else:
            return None
    if len(values) != len(ops) + 1:
        return None
    if negative:
        values[0] = -values[0]
    # * and / first, then + and -.
    terms, signs = [values[0]], []
    for op, value in zip(ops, values[1:]):
        if op in "*/":
            if op == "/" and value == 0:
                return None
            terms[-1] = terms[-1] * value if op == "*" else terms[-1] / value
        else:
            terms.append(value)
            signs.append(op)
    total = terms[0]
    for sign, term in zip(signs, terms[1:]):
        total = total + term if sign == "+" else total - term
    return total


def _close(a: Fraction, b: Fraction) -> bool:
    # Written results are often rounded ("10/3 = 3.33"): agree to the precision the text gives.
    return abs(a - b) <= max(Fraction(1, 100), abs(b) * Fraction(1, 1000))


def wrong_calculations(text: str) -> Iterator[str]:
    """Each false calculation written in `text`, as written."""
    for m in _ANNOTATION.finditer(text or ""):
        value, result = _evaluate(m.group(1)), _number(m.group(2))
        if value is not None and result is not None and not _close(value, result):
            yield m.group(0)
    plain = re.sub(r"<<[^<>]*>>", "", text or "")  # annotations, checked above (or malformed)
    for m in _INLINE.finditer(plain):
        # Only a whole calculation: not the tail of a longer one ("8 x 1 1/2 = 12", "(3 + 4) * 2 = 14")
        # nor the head of a result with more after it ("192 / 1.2 = 1.2Y").
        adjacent = plain[m.start() - 1 : m.start()] if m.start() else ""
        before = plain[: m.start()].rstrip()
        after = plain[m.end() : m.end() + 1]
        if (
            (adjacent and (adjacent.isalnum() or adjacent in ".)]}^"))
            or (before and (before[-1].isdigit() or before[-1] in ")]}+-*/×÷^" or before.endswith(" x")))
            or (after and (after.isalnum() or after in "/^(*"))
        ):
            continue
        value, result = _evaluate(m.group(1)), _number(m.group(2))
        if value is not None and result is not None and not _close(value, result):
            yield m.group(0)


def item_failures(
    record: Mapping[str, Any],
    families: Mapping[str, str] | None = None,
    task_kinds: Mapping[str, str] | None = None,
    min_answer_words: int = 3,
) -> list[dict[str, Any]]:
    failures: list[dict[str, Any]] = []
    kind = verifier_kind(
        str(record.get("family") or ""),
        str(record.get("format") or ""),
        families,
        (task_kinds or {}).get(str(record.get("task"))),
    )
    options = [str(o) for o in record.get("options") or []]
    label = record.get("answer_index")
    if kind == "multiple_choice" and options:
        seen: dict[tuple[str, ...], int] = {}
        for i, option in enumerate(options):
            words = _content(option)
            if words and words in seen:
                failures.append({"check": "options_duplicate", "options": [seen[words], i]})
            seen.setdefault(words, i)
        if isinstance(label, int) and 0 <= label < len(options):
            answer, question = set(_content(options[label])), set(_content(str(record.get("question") or "")))
            overlap = len(answer & question) / len(answer | question) if answer else 0.0
            if len(answer) >= min_answer_words and overlap >= 0.8:
                failures.append({"check": "answer_in_question", "option": options[label][:200]})
    if kind == "math":
        if normalize_math_answer(extract_math_answer(str(record.get("answer_text") or ""))) is None:
            failures.append({"check": "math_answer_not_a_number", "answer_text": str(record.get("answer_text"))[:200]})
        for name in ("answer_text", "reference"):
            wrong = list(wrong_calculations(str(record.get(name) or "")))
            if wrong:
                failures.append({"check": "arithmetic_wrong", "field": name, "calculations": wrong[:5]})
    return failures


@dataclass
class ItemRulesStage(ItemCheckStage):
    """Is the item a well-formed question? (duplicate options, answer in the question, math
    answers without a number or with false arithmetic; filter/quality/items.py)"""

    name: str = "item_rules"
    families: dict[str, str] = field(default_factory=dict)
    task_kinds: dict[str, str] = field(default_factory=dict)

    def item_failures(self, record: dict[str, Any]) -> list[tuple[str, bool, dict[str, Any]]]:
        return [(f["check"], False, f) for f in item_failures(record, self.families, self.task_kinds)]


@register_check(
    "item_rules",
    phase="screen",
    order=30,
    section="quality",
    report_column="checked",
    enabled=lambda s: s.quality_on,
    warnings=quality_off_warnings,
)
def item_rules_stage(ctx: CheckContext) -> ItemRulesStage:
    return ItemRulesStage(families=dict(ctx.settings.families), task_kinds=dict(ctx.settings.task_kinds))
