"""Quality checks on generated items: text heuristics per field (Curator's filters) and the
well-formedness of each item (`items`), and the consistency of each enrichment with its item
(`explanation`)."""

from nemo_taskseed.filter.quality.explanation import ExplanationSettings, explanation_failures
from nemo_taskseed.filter.quality.heuristics import (
    ENRICHMENT_FIELDS,
    ITEM_FIELDS,
    TextCheck,
    build_checks,
    text_failures,
)
from nemo_taskseed.filter.quality.items import item_failures

__all__ = [
    "ENRICHMENT_FIELDS",
    "ITEM_FIELDS",
    "ExplanationSettings",
    "TextCheck",
    "build_checks",
    "explanation_failures",
    "item_failures",
    "text_failures",
]
