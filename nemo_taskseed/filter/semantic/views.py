"""What the semantic check embeds: views of a benchmark row, windows of a generated item.

A benchmark row is embedded as the model is scored on it, not as one field of the raw row: the
question of a passage benchmark (boolq, race, siqa, logiqa) is a stem such as "How would you
describe Sasha?" that says nothing without its passage. Per row (`benchmark_views`):

  prompt   lm-eval's `doc_to_text` of the row (decontam/render.py: the same rendering the n-gram
           index holds), its template labels ("Question:", "Answer:") removed; the raw row's
           passage, question and sorted options when the task cannot be rendered
  core     the prompt without its lettered option lines (MMLU, AGIEval lay them out in the prompt):
           a generator that reuses a test item writes new options
  qa       core + the gold answer, only for rows whose core is short (NQ-style questions of a dozen
           words, where a wrong neighbour is easy): never the answer alone ("Yes" or "4" would
           match everything)

A generated item is embedded as several windows (`item_windows`), and the best window decides, so
a test item wrapped in a new lead-in and closing sentence and given new options scores as if it
stood alone:

  item              question + options sorted (the text semantic dedup and diversity use; first)
  question          the question alone (when the item has options)
  context, context+question
  <field>[i:j]      sentences i..j-1 of a long field: the field with up to `max_trim` sentences cut
                    from each end, and sentence-aligned windows of ~`window_words` words over
                    fields longer than 2 x that

Windows are made only where text is long, so a one-sentence question costs one or two embeddings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Benchmark rows have no common schema: the first of these keys that holds a string is the
# question (arc/mmlu/csqa/gsm8k: question, openbookqa: question_stem, piqa: goal, hellaswag: ctx,
# winogrande: sentence, math: problem, humaneval: prompt, mbpp: text).
QUESTION_KEYS = (
    "question",
    "question_stem",
    "Question",
    "goal",
    "ctx",
    "sentence",
    "problem",
    "prompt",
    "text",
    "query",
    "input",
)
# Passage-like keys, placed before the question in the raw fallback (boolq: passage, siqa: context,
# race: article, sciq: support, drop: passage, squad: context, openbookqa fact1 is not a passage).
CONTEXT_KEYS = ("passage", "context", "article", "support", "premise", "paragraph", "story")
# ...and the first of these that holds a list (or a dict with `text`) are the options.
OPTION_KEYS = ("choices", "options", "endings", "mc1_targets")

# Template scaffolding of lm-eval prompts: a label at the start of a line.
_LABEL = re.compile(
    r"^\s*(question|answer|q|a|passage|context|article|goal|solution|problem|premise|hypothesis|input|text)\s*:\s*",
    re.IGNORECASE,
)
# A lettered or numbered option line ("A. ...", "(B) ...", "3) ...").
_OPTION_LINE = re.compile(r"^\s*\(?([A-Ja-j]|[1-9])[\.\):]\s+\S")
# After . ! or ? and a space, whatever case follows (a lower-cased copy is still two sentences); an
# abbreviation split in two only adds a window.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")


def squash(text: Any) -> str:
    return " ".join(str(text or "").split())


def _options_of(row: dict[str, Any]) -> list[str]:
    for key in OPTION_KEYS:
        value = row.get(key)
        if isinstance(value, dict):
            value = value.get("text") or value.get("choices")
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return list(value)
    pairs = [row.get(k) for k in ("sol1", "sol2")] if "sol1" in row else [row.get(k) for k in ("option1", "option2")]
    return [p for p in pairs if isinstance(p, str)]


def join_options(question: str, options: Sequence[str] | None) -> str:
    """Question followed by its options SORTED: the same item with reordered options is one text."""
    question = squash(question)
    opts = sorted(squash(o) for o in options or () if str(o).strip())
    return " | ".join([question, *opts]) if opts else question


def raw_row_text(row: dict[str, Any]) -> tuple[str, list[str]] | None:
    """(passage + question, options) of a raw row, or None when it has no question-like string."""
    question = next((row[k] for k in QUESTION_KEYS if isinstance(row.get(k), str) and row[k].strip()), None)
    if question is None:
        from nemo_taskseed.filter.text import string_leaves

        # Unknown schema: its longest string is the best guess at the question.
        question = max(string_leaves(row), key=len, default=None)
        if question is None:
            return None
    context = [squash(row[k]) for k in CONTEXT_KEYS if isinstance(row.get(k), str) and row[k].strip()]
    return " ".join([*context, squash(question)]), _options_of(row)


def raw_item_text(row: dict[str, Any]) -> str | None:
    """A raw row as an item text (passage + question, options sorted), or None without a question."""
    raw = raw_row_text(row)
    return join_options(*raw) if raw else None


def strip_template(prompt: str) -> tuple[str, str]:
    """(the prompt without labels, the same without option lines), each squashed."""
    lines, core = [], []
    for line in prompt.splitlines():
        text = _LABEL.sub("", line).strip()
        if not text:
            continue
        lines.append(text)
        if not _OPTION_LINE.match(line):
            core.append(text)
    return squash(" ".join(lines)), squash(" ".join(core))


def benchmark_views(row: dict[str, Any], rendered: Any = None, qa_max_words: int = 16) -> list[tuple[str, str]]:
    """The row's texts to embed, [(view name, text)] (see the module doc). `rendered`: its lm-eval
    rendering (`RenderedDoc`) or None; only a rendering has a gold answer (the `qa` view)."""
    views: list[tuple[str, str]] = []
    answer = ""
    if rendered is not None and rendered.prompt:
        prompt, core = strip_template("\n".join(rendered.prompt))
        answer = rendered.answer
        if prompt:
            views.append(("prompt", prompt))
        if core and core != prompt:
            views.append(("core", core))
    if not views:
        raw = raw_row_text(row)
        if raw is None:
            return []
        text, options = raw
        views.append(("prompt", join_options(text, options)))
        if options:
            views.append(("core", squash(text)))
    answer = squash(answer)
    core_text = views[-1][1]
    # A short question is only specific with its answer; an answer of one letter or a bare yes/no
    # adds nothing a neighbour would not share.
    if (
        answer
        and len(core_text.split()) <= qa_max_words
        and not re.fullmatch(r"(?i)[a-j]|yes|no|true|false", answer)
        and answer.casefold() not in core_text.casefold()
    ):
        views.append(("qa", f"{core_text} {answer}"))
    return views


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text or "") if s and s.strip()]


@dataclass(frozen=True)
class WindowSettings:
    """`filter.decontam.semantic.windows`."""

    fields: tuple[str, ...]
    max_trim: int
    window_words: int
    min_words: int
    max_windows: int


def _field_windows(name: str, text: str, ws: WindowSettings) -> list[tuple[str, str]]:
    parts = sentences(text)
    n = len(parts)
    out: list[tuple[str, str]] = []
    if n >= 3:
        # The field with up to max_trim sentences cut from each end: a test item between a new
        # lead-in and a new closing sentence comes back whole.
        for i in range(0, ws.max_trim + 1):
            for j in range(0, ws.max_trim + 1):
                if (i or j) and n - i - j >= 1:
                    out.append((f"{name}[{i}:{n - j}]", " ".join(parts[i : n - j])))
    words = [len(p.split()) for p in parts]
    if sum(words) > 2 * ws.window_words:
        # Long fields: sentence-aligned windows of ~window_words words, half overlapping.
        start = 0
        while start < n:
            end, size = start, 0
            while end < n and (size < ws.window_words or end == start):
                size += words[end]
                end += 1
            out.append((f"{name}[{start}:{end}]", " ".join(parts[start:end])))
            if end >= n:
                break
            half, step = 0, start
            while step < end - 1 and half < size / 2:
                half += words[step]
                step += 1
            start = max(step, start + 1)
    return out


def item_windows(record: dict[str, Any], ws: WindowSettings) -> list[tuple[str, str]]:
    """[(window name, text)] of a generated item (or seed), `item` first; no text twice."""
    question = squash(record.get("question"))
    options = record.get("options") if isinstance(record.get("options"), list) else None
    context = squash(record.get("context")) if isinstance(record.get("context"), str) else ""
    out = [("item", join_options(question, options))]
    if options and question:
        out.append(("question", question))
    if context:
        out += [("context", context), ("context+question", f"{context} {question}".strip())]
    for name in ws.fields:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            out += _field_windows(name, value, ws)
    seen, unique = set(), []
    for name, text in out:
        # min_words applies to sentence windows only: a whole field is embedded however short.
        if text and text not in seen and ("[" not in name or len(text.split()) >= ws.min_words):
            seen.add(text)
            unique.append((name, text))
    # `item` and the whole fields first; windows beyond the cap are dropped from the end.
    return unique[: max(1, ws.max_windows)]
