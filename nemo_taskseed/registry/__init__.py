"""Per-family answer extractors and checks used by verification (stage 5).

A family (lm-eval task family: gsm8k, mbpp, arc, ...) maps to one verifier kind; a new family
adds one entry in `filter.verify.families` or one `register_family` call.
"""

from nemo_taskseed.registry.extractors import (
    EXTRACTORS,
    VERIFIER_KINDS,
    Extractor,
    extract_boxed,
    extract_choice_letter,
    extract_gsm8k,
    extract_last_number,
    extract_math_answer,
    get_extractor,
    math_equivalent,
    normalize_math_answer,
    normalize_short_answer,
    register_extractor,
    register_family,
    verifier_kind,
)

__all__ = [
    "EXTRACTORS",
    "VERIFIER_KINDS",
    "Extractor",
    "extract_boxed",
    "extract_choice_letter",
    "extract_gsm8k",
    "extract_last_number",
    "extract_math_answer",
    "get_extractor",
    "math_equivalent",
    "normalize_math_answer",
    "normalize_short_answer",
    "register_extractor",
    "register_family",
    "verifier_kind",
]
