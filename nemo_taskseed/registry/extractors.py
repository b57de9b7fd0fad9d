"""Answer extraction and normalization, per verifier kind.

Verifier kinds:
- `multiple_choice`: the model picks a letter; compared with the item's label.
- `math`: final answer from a worked solution (GSM8K `#### x`, `\\boxed{x}`, else the last
  number), normalized so "1,000", "$1000.00" and "1000" agree; symbolic answers are compared by
  mathematical equivalence (`math_equivalent`: `\\frac{\\sqrt2}{2}` = `\\sqrt{2}/2` = `1/\\sqrt{2}`).
- `code`: the item's solution runs against its tests in the sandbox (no extraction).
- `short_answer`: SQuAD-style normalized exact match.

Which kind a record gets: multiple choice by format; else `filter.verify.families` (family ->
kind), then the kind the catalog derived for the record's task from its lm-eval config
(`catalog/verifiers.py`, carried in the seeds' summary), then the families registered here, else
short_answer.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

VERIFIER_KINDS = ("multiple_choice", "math", "code", "short_answer")
LETTERS = string.ascii_uppercase

# Families whose generative items are math word problems or code; others default by format.
_FAMILY_KINDS: dict[str, str] = {
    "gsm8k": "math",
    "gsm8k_platinum": "math",
    "gsm_plus": "math",
    "asdiv": "math",
    "mgsm": "math",
    "hendrycks_math": "math",
    "minerva_math": "math",
    "math": "math",
    "aime": "math",
    "arithmetic": "math",
    "mbpp": "code",
    "humaneval": "code",
    "mbpp_plus": "code",
}


def register_family(family: str, kind: str) -> None:
    if kind not in VERIFIER_KINDS:
        raise ValueError(f"unknown verifier kind {kind!r}; expected one of {VERIFIER_KINDS}")
    _FAMILY_KINDS[family] = kind


def verifier_kind(
    family: str, fmt: str, overrides: Mapping[str, str] | None = None, catalog_kind: str | None = None
) -> str:
    """`catalog_kind`: what the catalog derived for the record's task from its lm-eval config
    (catalog/verifiers.py, carried by the seeds); absent for seeds written before it did."""
    if fmt == "multiple_choice":
        return "multiple_choice"
    if overrides and family in overrides:
        kind = str(overrides[family])
        if kind not in VERIFIER_KINDS:
            raise ValueError(f"filter.verify.families.{family}: unknown kind {kind!r}; expected {VERIFIER_KINDS}")
        return kind
    if catalog_kind in VERIFIER_KINDS:
        return str(catalog_kind)
    return _FAMILY_KINDS.get(family, "short_answer")


# ---- multiple choice ------------------------------------------------------------------------

_LETTER_PATTERNS = [
    re.compile(r'"answer"\s*:\s*"\(?([A-Z])\)?"'),  # JSON-constrained output
    re.compile(r"(?i:answer|option|choice)\s*(?i:is|:)?\s*\(?([A-Z])\b\)?"),  # letter stays upper case
    re.compile(r"^\s*\(?([A-Z])[\).:\s]"),
    re.compile(r"^\s*([A-Z])\s*$"),
]


def extract_choice_letter(output: str, n_options: int, options: list[str] | None = None) -> int | None:
    """Index of the option the output picks: a letter, or an option's text quoted verbatim."""
    if not output:
        return None
    for pat in _LETTER_PATTERNS:
        m = pat.search(output.strip())
        if m:
            idx = LETTERS.index(m.group(1).upper())
            if idx < n_options:
                return idx
    if options:
        # The option's text, quoted in the output: exactly one option may appear.
        padded = f" {normalize_short_answer(output)} "
        hits = [
            i
            for i, opt in enumerate(options)
            if normalize_short_answer(opt) and f" {normalize_short_answer(opt)} " in padded
        ]
        if len(hits) == 1:
            return hits[0]
    return None


# ---- math -----------------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def extract_gsm8k(text: str) -> str | None:
    m = re.search(r"####\s*([^\n]+)", text or "")
    return m.group(1).strip() if m else None


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), braces balanced."""
    if not text:
        return None
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None


def extract_last_number(text: str) -> str | None:
    nums = _NUMBER.findall(text or "")
    return nums[-1] if nums else None


def extract_expression(text: str) -> str | None:
    """The whole text when it is itself a short answer in LaTeX or symbols (MATH's `answer`
    field, `\\frac{\\sqrt{2}}{2}`), not a solution: its last number would be `2`."""
    text = (text or "").strip().strip("$").strip()
    if text and _looks_symbolic(text) and re.search(r"\\[a-zA-Z]+|[\^_{}]", text):
        return text
    return None


def extract_math_answer(text: str) -> str | None:
    for fn in (extract_gsm8k, extract_boxed, extract_expression, extract_last_number):
        ans = fn(text)
        if ans:
            return ans
    return None


def normalize_math_answer(ans: str | None) -> str | None:
    """Canonical string: numbers as reduced fractions/integers, LaTeX noise removed."""
    if ans is None:
        return None
    s = ans.strip().rstrip(".").strip()
    s = re.sub(r"\\(?:left|right|!|,|;|\s)", "", s)
    s = re.sub(r"\\text\{[^}]*\}", "", s)
    s = re.sub(r"\\(?:d|t)?frac\{([^{}]+)\}\{([^{}]+)\}", r"\1/\2", s)
    s = s.replace("$", "").replace("%", "").replace(" ", "")
    num = s.replace(",", "") if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s) else s
    try:
        value = Fraction(num)
    except (ValueError, ZeroDivisionError):
        m = re.match(r"^(-?\d+(?:\.\d+)?)[a-zA-Z]*$", num)  # "18dollars", "5cm"
        if not m:
            return s.lower()
        value = Fraction(m.group(1))
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


_PLAIN_NUMBER = re.compile(r"-?\d+(?:/\d+)?")
# Longer answers are not parsed (sympy's time grows with the expression; a sentence is no answer).
_MAX_SYMBOLIC_CHARS = 120


def _looks_symbolic(answer: str) -> bool:
    """LaTeX or an expression, not prose: no word of 4+ letters outside LaTeX commands."""
    bare = re.sub(r"\\[a-zA-Z]+", " ", answer)
    return len(answer) <= _MAX_SYMBOLIC_CHARS and not re.search(r"[a-zA-Z]{4,}", bare)


@lru_cache(maxsize=65536)
def math_equivalent(a: str | None, b: str | None) -> bool:
    """Two normalized math answers (`normalize_math_answer`) name the same value. Equal strings
    are; two plain numbers are only when equal (they are canonical already); otherwise symbolic
    answers are parsed and compared with Hugging Face's math-verify (the checker of open-r1 and
    lighteval: sympy equality after LaTeX parsing), so `\\frac{\\sqrt2}{2}` and `\\sqrt{2}/2` agree."""
    if a is None or b is None:
        return False
    if a == b:
        return True
    if _PLAIN_NUMBER.fullmatch(a) and _PLAIN_NUMBER.fullmatch(b):
        return False
    if not (_looks_symbolic(a) and _looks_symbolic(b)):
        return False
    from nemo_taskseed.compat import math_verify_equal

    return math_verify_equal(a, b)


# ---- short answer ---------------------------------------------------------------------------


def normalize_short_answer(text: str | None) -> str:
    """SQuAD normalization: lowercase, drop punctuation and articles, collapse spaces."""
    if not text:
        return ""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def extract_short_answer(text: str) -> str | None:
    """First line, minus a leading "Answer:"; normalized."""
    if not text or not text.strip():
        return None
    line = text.strip().splitlines()[0]
    line = re.sub(r"^\s*(?:final\s+)?answer\s*[:\-]\s*", "", line, flags=re.IGNORECASE)
    return normalize_short_answer(line) or None


# ---- registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Extractor:
    """How to read one sampled answer and the item's reference for a verifier kind."""

    kind: str
    instruction: str  # appended to the question when sampling
    extract: Callable[[str], str | None]  # model output -> normalized answer
    reference: Callable[[dict], str | None]  # record -> normalized reference answer
    # Do two normalized answers agree? (math: by equivalence; others: equal strings)
    same: Callable[[str | None, str | None], bool] = field(default=lambda a, b: a is not None and a == b)


def _math_reference(record: dict) -> str | None:
    for text in (record.get("answer_text"), record.get("reference")):
        ans = normalize_math_answer(extract_math_answer(text or ""))
        if ans:
            return ans
    return None


EXTRACTORS: dict[str, Extractor] = {
    "math": Extractor(
        "math",
        "Solve the problem step by step. End with a final line of the form '#### <number>'.",
        lambda out: normalize_math_answer(extract_math_answer(out)),
        _math_reference,
        math_equivalent,
    ),
    "short_answer": Extractor(
        "short_answer",
        "Reply with the answer only, on one line.",
        extract_short_answer,
        lambda rec: normalize_short_answer(rec.get("answer_text")) or None,
    ),
}


def register_extractor(extractor: Extractor) -> None:
    EXTRACTORS[extractor.kind] = extractor


def get_extractor(kind: str) -> Extractor:
    try:
        return EXTRACTORS[kind]
    except KeyError:
        raise ValueError(f"no extractor for verifier kind {kind!r}; registered: {sorted(EXTRACTORS)}") from None
