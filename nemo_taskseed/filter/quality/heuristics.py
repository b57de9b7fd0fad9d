"""Text-quality checks on every generated field, with NeMo Curator's heuristic document filters.

The filters themselves are Curator's (`nemo_curator.stages.text.filters.heuristic`: word counts,
duplicate n-grams, repeated lines, non-alphanumeric and symbol ratios, ...). Curator runs them on a
whole document column through `ScoreFilter`; a generated record is not one document but several
fields of different kinds (a question, four options, a reasoning, one "why wrong" per option, a
background), each of which must pass on its own, and a failure must name the field. So this
module applies each configured filter's `score_document` / `keep_document` to the named fields,
one text at a time, and says which filter failed on which field with its score.

Fields (dotted names are inside `enrichment`):
  item fields       question, options (each option), answer_text, context, reference
  enrichment fields reasoning, alternatives (each `why_wrong`), knowledge
A failure on an item field condemns the item; on an enrichment field only the documents that
show the enrichment (see `explanation.py` for how the stage applies that).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.checks import CheckContext, ItemCheckStage, register_check

ITEM_FIELDS = ("question", "options", "answer_text", "context", "reference")
ENRICHMENT_FIELDS = ("reasoning", "alternatives", "knowledge")
FIELDS = ITEM_FIELDS + ENRICHMENT_FIELDS

# Where a short filter name is looked up (any dotted path `module.Class` works too).
_CURATOR_MODULES = (
    "nemo_curator.stages.text.filters.heuristic",
    "nemo_curator.stages.text.filters.heuristic.repetition",
    "nemo_curator.stages.text.filters.heuristic.code",
)


def field_texts(record: Mapping[str, Any], name: str) -> Iterator[tuple[str, str]]:
    """(label, text) for every non-empty text of field `name`: `options[2]`, `alternatives[0]`, ..."""
    enrichment = record.get("enrichment") if isinstance(record.get("enrichment"), Mapping) else None
    if name in ENRICHMENT_FIELDS:
        if enrichment is None:
            return
        value = enrichment.get(name)
        if name == "alternatives":
            for i, alt in enumerate(value or []):
                if isinstance(alt, Mapping) and isinstance(alt.get("why_wrong"), str):
                    yield f"alternatives[{i}]", alt["why_wrong"]
            return
    else:
        value = record.get(name)
    if isinstance(value, str):
        if value.strip():
            yield name, value
    elif isinstance(value, list):
        for i, text in enumerate(value):
            if isinstance(text, str) and text.strip():
                yield f"{name}[{i}]", text


# Scripts written without spaces between words (Han, kana, Thai, Lao, Khmer, Myanmar): Curator's
# English word splitter sees a whole sentence as one word, so word counts and word n-gram ratios
# would reject every such text. Those texts are not scored by word-based checks unless the check
# was built for the language (`params: {lang: zh}` or `ja`, Curator's own splitters).
_UNSPACED = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def _unspaced_script(text: str) -> bool:
    return len(_UNSPACED.findall(text)) > 0.3 * len(text)


def _filter_class(name: str, where: str) -> type:
    if "." in name:
        module, _, cls = name.rpartition(".")
        candidates = (module,)
        name = cls
    else:
        candidates = _CURATOR_MODULES
    for module in candidates:
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if found is not None:
            return found
    raise UserError(f"{where}: unknown filter {name!r} (looked in {', '.join(candidates)})")


@dataclass(frozen=True)
class TextCheck:
    """One Curator filter applied to some fields.

    `skip_below_words`: texts with fewer words are not scored by this filter (repetition ratios
    of a five-word option mean nothing, and Curator's n-gram filters score texts shorter than n
    as fully repeated). Word counts themselves are a separate check.
    """

    name: str  # what rejections say: the Curator filter's own name (e.g. "repeating_dup_4gram")
    fields: tuple[str, ...]
    filter: Any
    skip_below_words: int = 0
    word_based: bool = True  # splits words on spaces: not applied to unspaced scripts
    formats: tuple[str, ...] = ()  # only items of these formats (empty: all)

    @classmethod
    def from_config(cls, entry: Mapping[str, Any], where: str) -> TextCheck:
        entry = dict(entry)
        unknown = set(entry) - {"filter", "fields", "params", "skip_below_words", "name", "formats"}
        if unknown or "filter" not in entry or "fields" not in entry:
            raise UserError(
                f"{where}: expected keys filter, fields[, params, skip_below_words, name, formats]; got {sorted(entry)}"
            )
        fields = tuple(entry["fields"])
        bad = [f for f in fields if f not in FIELDS]
        if bad:
            raise UserError(f"{where}.fields: unknown field(s) {bad}; known: {list(FIELDS)}")
        try:
            instance = _filter_class(str(entry["filter"]), where)(**dict(entry.get("params") or {}))
        except TypeError as exc:
            raise UserError(f"{where}.params: {exc}") from exc
        name = str(entry.get("name") or getattr(instance, "name", None) or entry["filter"])
        # Curator's word-based filters carry a `_word_splitter` (chosen by their `lang`).
        word_based = hasattr(instance, "_word_splitter") and str((entry.get("params") or {}).get("lang", "en")) not in (
            "zh",
            "ja",
        )
        return cls(
            name=name,
            fields=fields,
            filter=instance,
            skip_below_words=int(entry.get("skip_below_words") or 0),
            word_based=word_based,
            formats=tuple(entry.get("formats") or ()),
        )

    def failures(self, record: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        if self.formats and record.get("format") not in self.formats:
            return
        for name in self.fields:
            for label, text in field_texts(record, name):
                if self.word_based and _unspaced_script(text):
                    continue
                if self.skip_below_words and len(text.split()) < self.skip_below_words:
                    continue
                score = self.filter.score_document(text)
                if not self.filter.keep_document(score):
                    yield {
                        "check": self.name,
                        "field": name,
                        "where": label,
                        "score": round(float(score), 4),
                        "text": text[:200],
                    }


def build_checks(entries: Sequence[Mapping[str, Any]]) -> list[TextCheck]:
    return [TextCheck.from_config(e, f"filter.quality.checks[{i}]") for i, e in enumerate(entries or [])]


def text_failures(record: Mapping[str, Any], checks: Sequence[TextCheck]) -> list[dict[str, Any]]:
    """Every failing (check, field) of a record, in config order."""
    return [f for check in checks for f in check.failures(record)]


def quality_off_warnings(settings, facts) -> list[str]:
    if settings.quality_on:
        return []
    return ["quality checks are off (filter.quality.enabled=false): text, item and explanation rules not applied"]


@dataclass
class TextQualityStage(ItemCheckStage):
    """Curator's heuristic filters on every generated field (filter.quality.checks)."""

    name: str = "text_quality"
    checks: list[dict[str, Any]] = field(default_factory=list)
    enrichment_failure: str = "strip"

    def setup(self, worker_metadata=None) -> None:
        self._checks = build_checks(self.checks)

    def item_failures(self, record: dict[str, Any]) -> list[tuple[str, bool, dict[str, Any]]]:
        if not hasattr(self, "_checks"):
            self.setup()
        return [
            (f"{f['check']}:{f['field']}", f["field"] in ENRICHMENT_FIELDS, f)
            for f in text_failures(record, self._checks)
        ]


@register_check(
    "text_quality",
    phase="screen",
    order=20,
    section="quality",
    report_column="checked",
    enabled=lambda s: s.quality_on,
    warnings=quality_off_warnings,
)
def text_quality_stage(ctx: CheckContext) -> TextQualityStage:
    quality = ctx.settings.raw["quality"]
    return TextQualityStage(checks=list(quality["checks"]), enrichment_failure=quality["enrichment_failure"])
