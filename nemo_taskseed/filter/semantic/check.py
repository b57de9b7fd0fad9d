"""Paraphrase-aware decontamination: retrieve the nearest scored benchmark items by embedding,
flag pairs at or above a cosine threshold, optionally let an LLM judge confirm (retrieve, then
judge, as NeMo-Skills' contamination check does).

13-gram overlap misses a test question with one changed word or a reordered clause; the nearest
benchmark item by embedding does not. Verdicts:
  above_threshold   no judge configured: the pair's score decides; the record is dropped
  judge_confirmed   the judge says the two are the same question; dropped
  judge_unclear     the judge's answer is neither yes nor no; dropped (a leak costs more than an item)
  judge_rejected    the judge says they differ; the record is kept, the pair still reported
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from nemo_taskseed.config import section_settings
from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.semantic.index import SemanticHit, SemanticIndex
from nemo_taskseed.llm.backends import Backend
from nemo_taskseed.llm.requests import RequestSession, ask, make_request

DROP_VERDICTS = ("above_threshold", "judge_confirmed", "judge_unclear")

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
    threshold: float
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
        out = cls(**{**values, "judge": judge})
        if not 0.0 < float(out.threshold) <= 1.0:
            raise UserError(f"filter.decontam.semantic.threshold must be in (0, 1], got {out.threshold}")
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
