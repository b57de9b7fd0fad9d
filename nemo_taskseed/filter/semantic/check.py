"""Paraphrase-aware decontamination: retrieve the nearest scored benchmark rows by embedding,
then decide (retrieve, then judge, as NeMo-Skills' contamination check does).

13-gram overlap misses a test question with one changed word or a reordered clause; the nearest
benchmark row by embedding does not. Every window of an item (views.py) is searched; per benchmark
row the best window counts. A pair at or above `threshold` is dropped; a pair in the review band
[`review_threshold`, `threshold`) goes to the LLM judge when one is configured, else to the band
rule (a CPU check: enough of the benchmark row's rare words and numbers are in the window).
Thresholds can differ per benchmark (`per_benchmark`). Verdicts:
  above_threshold   at or above the drop threshold; dropped
  band_rule         in the band, the band rule says the window carries the row; dropped
  band_kept         in the band, the band rule says it does not; kept, the pair still reported
  judge_confirmed   in the band, the judge says the two are the same question; dropped
  judge_unclear     the judge's answer is neither yes nor no; dropped (a leak costs more than an item)
  judge_rejected    the judge says they differ; kept, the pair still reported
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from nemo_taskseed.config import section_settings
from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.semantic.index import SemanticHit, SemanticIndex
from nemo_taskseed.filter.semantic.views import WindowSettings
from nemo_taskseed.llm.backends import Backend
from nemo_taskseed.llm.requests import RequestSession, ask, make_request

DROP_VERDICTS = ("above_threshold", "band_rule", "judge_confirmed", "judge_unclear")

JUDGE_PROMPT = (
    "Below are a benchmark test question and a candidate training question. Is the candidate the same "
    "question as the test question, possibly reworded (same problem, same answer), so that training on it "
    "would leak the test question? Reply with one word: yes or no.\n\n"
    "Test question:\n{benchmark}\n\nCandidate:\n{item}\n\nAnswer:"
)


@dataclass(frozen=True)
class SemanticSettings:
    """`filter.decontam.semantic` (configs/base/filter.yaml holds the defaults and says why)."""

    enabled: bool
    model: str | None
    # A pair at or above `threshold` is dropped; in [review_threshold, threshold) the judge or the
    # band rule decides; below, nothing happens.
    threshold: float
    review_threshold: float
    # The band rule (no judge): dropped when at least this share of the benchmark row's anchors
    # (numbers and rare words) is in the item's window.
    band_min_anchor_share: float
    # benchmark name -> {threshold, review_threshold}: where the calibration shows a benchmark needs
    # its own (templated benchmarks such as MBPP sit closer to their training rows).
    per_benchmark: dict[str, Any]
    windows: WindowSettings
    top_k: int
    max_seq_length: int
    batch_size: int
    # Where the embedding model runs: auto (CUDA when this process sees a GPU, else CPU), cpu, cuda.
    device: str
    # GPUs each embedding worker holds on Ray (a fraction shares one GPU); 0: none, so a Ray
    # worker sees no GPU and `auto` embeds on CPU.
    gpus: float
    judge: dict[str, Any]  # enabled, backend (a backend section), max_tokens

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> SemanticSettings:
        """From the full config or its `filter.decontam.semantic` section; `overrides` replace fields."""
        values = {**section_settings(cls, cfg, "filter.decontam.semantic", strict=True), **overrides}
        judge = section_settings(
            None, values["judge"], "filter.decontam.semantic.judge", ("enabled", "backend", "max_tokens"), strict=True
        )
        windows = values["windows"]
        if not isinstance(windows, WindowSettings):
            w = section_settings(WindowSettings, windows, "filter.decontam.semantic.windows", strict=True)
            windows = WindowSettings(
                tuple(str(f) for f in w["fields"]),
                int(w["max_trim"]),
                int(w["window_words"]),
                int(w["min_words"]),
                int(w["max_windows"]),
            )
        per_benchmark = {str(k): dict(v or {}) for k, v in (values["per_benchmark"] or {}).items()}
        out = cls(**{**values, "judge": judge, "windows": windows, "per_benchmark": per_benchmark})
        for name, own in [("", {}), *per_benchmark.items()]:
            where = f"filter.decontam.semantic{'.per_benchmark.' + name if name else ''}"
            unknown = sorted(set(own) - {"threshold", "review_threshold"})
            if unknown:
                raise UserError(f"{where}: unknown key(s) {unknown}; known: ['review_threshold', 'threshold']")
            high, low = out.levels(name)
            if not 0.0 < high <= 1.0:
                raise UserError(f"{where}.threshold must be in (0, 1], got {high}")
            if not 0.0 < low <= high:
                raise UserError(f"{where}.review_threshold must be in (0, threshold], got {low}")
        if not 0.0 <= float(out.band_min_anchor_share) <= 1.0:
            raise UserError(
                f"filter.decontam.semantic.band_min_anchor_share must be in [0, 1], got {out.band_min_anchor_share}"
            )
        if out.windows.max_trim < 0 or out.windows.window_words < 1 or out.windows.max_windows < 1:
            raise UserError("filter.decontam.semantic.windows: max_trim >= 0, window_words >= 1, max_windows >= 1")
        if int(out.top_k) < 1:
            raise UserError(f"filter.decontam.semantic.top_k must be >= 1, got {out.top_k}")
        if out.device not in ("auto", "cpu", "cuda"):
            raise UserError(f"filter.decontam.semantic.device must be auto, cpu or cuda, got {out.device!r}")
        if float(out.gpus) < 0:
            raise UserError(f"filter.decontam.semantic.gpus must be >= 0, got {out.gpus}")
        return out

    @property
    def judge_enabled(self) -> bool:
        return bool(self.judge["enabled"])

    def levels(self, benchmark: str) -> tuple[float, float]:
        """(threshold, review_threshold) for a benchmark: its own where `per_benchmark` sets them."""
        own = self.per_benchmark.get(benchmark) or {}
        return float(own.get("threshold", self.threshold)), float(own.get("review_threshold", self.review_threshold))


@dataclass(frozen=True)
class Match:
    """An item's best window against one benchmark row."""

    hit: SemanticHit
    window: str  # the window's name (views.item_windows)
    window_text: str


def window_vectors(windows: list[list[tuple[str, str]]], embed: Any) -> list[np.ndarray]:
    """Per item, the vectors of its windows (views.item_windows), from one call of `embed` over the
    distinct window texts of all items (an item's variants and repeated windows are embedded once)."""
    position: dict[str, int] = {}
    for item in windows:
        for _, text in item:
            position.setdefault(text, len(position))
    vectors = embed(list(position))
    if not len(vectors):
        return [np.zeros((0, 0), dtype=np.float32) for _ in windows]
    return [vectors[[position[t] for _, t in item]] for item in windows]


def best_matches(
    index: SemanticIndex, windows: list[list[tuple[str, str]]], vectors: list[np.ndarray], top_k: int
) -> list[list[Match]]:
    """Per item, its nearest benchmark rows over all its windows (each row once, with the window that
    came closest), best first; ties go to the earlier window, then the earlier row."""
    flat = np.concatenate(vectors) if vectors else np.zeros((0, index.dim or 1), dtype=np.float32)
    hits = index.search(flat, top_k) if len(flat) else []
    out, start = [], 0
    for item_windows, vecs in zip(windows, vectors):
        best: dict[Any, tuple[float, int, Match]] = {}
        for w, (name, text) in enumerate(item_windows):
            for hit in hits[start + w]:
                old = best.get(hit.row)
                if old is None or hit.score > old[0]:
                    best[hit.row] = (hit.score, w, Match(hit, name, text))
        start += len(vecs)
        ranked = sorted(best.values(), key=lambda v: (-v[0], v[1], v[2].hit.row.split, v[2].hit.row.row))
        out.append([m for _, _, m in ranked[:top_k]])
    return out


_STOP = frozenset(
    """about above after again against also among because been before being below between both
    could does doing down during each either every from have having here into itself just least
    like many more most much must near neither other over same shall should since some such than
    that their them then there these they this those through thus under until upon very were what
    when where which while whom whose will with within without would your yours following correct
    answer question best statement describes explains true false""".split()
)


def anchors(text: str) -> tuple[set[str], set[str]]:
    """(numbers, rare words) of a text (rare words as 5-letter stems of words of 5+ letters, not stop
    words): what a rewording keeps (quantities, names, technical terms) while it changes the common
    words."""
    from nemo_taskseed.filter.text import normalize_words

    numbers, rare = set(), set()
    for word in normalize_words(text):
        if any(ch.isdigit() for ch in word):
            numbers.add(word)
        elif len(word) >= 5 and word not in _STOP:
            rare.add(word[:5])
    return numbers, rare


def anchor_share(benchmark_text: str, window_text: str) -> float:
    """Share of the benchmark text's anchors found in the window: its numbers when it has two or more
    (a word problem reworded keeps every quantity, a new one does not), else its rare words; 1.0
    when it has neither."""
    numbers, rare = anchors(benchmark_text)
    got_numbers, got_rare = anchors(window_text)
    wanted, got = (numbers, got_numbers) if len(numbers) >= 2 else (rare | numbers, got_rare | got_numbers)
    if not wanted:
        return 1.0
    return round(len(wanted & got) / len(wanted), 4)


def decide(matches: list[Match], settings: SemanticSettings) -> tuple[Match, str, dict[str, Any]] | None:
    """(match, verdict, extra detail) for an item's best pair at or above its review level, or None.
    At or above the benchmark's threshold: `above_threshold`. In its band: `band` when the judge is
    on (it decides afterwards, one pair per item), else the band rule's verdict over the band's pairs."""
    band = []
    for m in matches:
        high, low = settings.levels(m.hit.row.benchmark)
        if m.hit.score >= high:
            return m, "above_threshold", {}
        if m.hit.score >= low:
            band.append(m)
    if not band:
        return None
    if settings.judge_enabled:
        return band[0], "band", {}
    shares = [anchor_share(m.hit.text, m.window_text) for m in band]
    for m, share in zip(band, shares):
        if share >= settings.band_min_anchor_share:
            return m, "band_rule", {"anchor_share": share}
    return band[0], "band_kept", {"anchor_share": shares[0]}


def flagged(index: SemanticIndex, vectors: np.ndarray, threshold: float, top_k: int = 3) -> list[list[SemanticHit]]:
    """Per vector, its benchmark neighbours (of the top k) at or above the threshold, best first."""
    return [[h for h in hits if h.score >= threshold] for hits in index.search(vectors, top_k)]


def parse_verdict(text: str) -> str:
    word = re.match(r"\W*(\w+)", (text or "").strip().lower())
    if word and word.group(1) in ("yes", "same"):
        return "judge_confirmed"
    if word and word.group(1) in ("no", "different"):
        return "judge_rejected"
    return "judge_unclear"


def judge_pairs(
    backend: Backend, pairs: list[tuple[str, str]], max_tokens: int = 4, session: RequestSession | None = None
) -> list[tuple[str, str]]:
    """(verdict, raw answer) per (item text, benchmark text) pair; greedy, one sample each, asked
    through `session` (the shard's request cache: a restarted shard does not ask again)."""
    if not pairs:
        return []
    sampling = {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": int(max_tokens), "seed": None}
    requests = [
        make_request(
            [{"role": "user", "content": JUDGE_PROMPT.format(item=item, benchmark=bench)}],
            backend.model,
            sampling,
            None,
        )
        for item, bench in pairs
    ]
    replies = ask(backend, requests, session, desc="judge")
    answers = [(reply["outputs"] or [""])[0] for reply in replies]
    return [(parse_verdict(a), a[:200]) for a in answers]
