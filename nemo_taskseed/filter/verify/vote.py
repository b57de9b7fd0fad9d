"""Answer verification by majority vote of k sampled answers, and code checks in the sandbox.

The backend is a `nemo_taskseed.llm.Backend` (`build_backend(cfg)`: in-process vLLM or an
OpenAI-compatible endpoint). The model never sees the proposed label.

Rule: an item passes when the label (or reference answer) has at least `threshold * k` votes and
strictly more votes than any other answer. Unparseable samples count as votes against. The
agreement rate (votes for the label / k) is recorded on every voted item, kept or not.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from nemo_taskseed.llm.backends import Backend
from nemo_taskseed.registry import extract_choice_letter, get_extractor

LETTERS = string.ascii_uppercase


@dataclass
class VoteSettings:
    k: int = 5
    temperature: float = 0.7
    top_p: float = 0.95
    threshold: float = 0.6
    # Room for the JSON object: the 135M model pads it with newlines and spaces.
    max_tokens_choice: int = 32
    max_tokens_math: int = 384
    max_tokens_short: int = 32
    constrained_choice: bool = True  # JSON-schema decoding of {"answer": <letter>}

    @classmethod
    def from_config(cls, cfg: Any) -> VoteSettings:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in dict(cfg or {}).items() if k in known})


@dataclass
class VoteResult:
    method: str
    k: int
    votes: list[Any]
    target: Any  # the label letter or the normalized reference answer
    majority: Any
    agreement: float  # share of the k votes equal to the target
    passed: bool
    outputs: list[str] = field(default_factory=list, repr=False)
    # Set by panel_vote: each member's own agreement, the greedy answers, the too-easy verdict.
    members: list[dict[str, Any]] = field(default_factory=list)
    greedy: list[dict[str, Any]] = field(default_factory=list)
    too_easy: bool = False

    def to_dict(self, keep_outputs: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not keep_outputs:
            d.pop("outputs")
        if not d["greedy"]:
            d.pop("greedy")
            d.pop("too_easy")
        return d


def decide(votes: Sequence[Any], target: Any, k: int, threshold: float) -> tuple[Any, float, bool]:
    counts = Counter(v for v in votes if v is not None)
    majority = counts.most_common(1)[0][0] if counts else None
    for_target = counts.get(target, 0) if target is not None else 0
    agreement = for_target / k if k else 0.0
    others = max((c for v, c in counts.items() if v != target), default=0)
    passed = target is not None and agreement >= threshold and for_target > others
    return majority, round(agreement, 4), passed


def choice_conversation(record: dict[str, Any]) -> list[dict]:
    options = record.get("options") or []
    lines = []
    if record.get("context"):
        lines += [str(record["context"]).strip(), ""]
    lines.append(f"Question: {str(record.get('question', '')).strip()}")
    lines += [f"{LETTERS[i]}. {opt}" for i, opt in enumerate(options)]
    letters = ", ".join(LETTERS[: len(options)])
    system = f"Answer the multiple-choice question with the letter of the correct option ({letters}) only."
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines) + "\nAnswer:"}]


def choice_schema(n_options: int) -> dict:
    return {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": list(LETTERS[:n_options])}},
        "required": ["answer"],
        "additionalProperties": False,
    }


def generative_conversation(record: dict[str, Any], instruction: str) -> list[dict]:
    text = str(record.get("question", "")).strip()
    if record.get("context"):
        text = f"{str(record['context']).strip()}\n\n{text}"
    return [{"role": "system", "content": instruction}, {"role": "user", "content": text}]


def vote_multiple_choice(
    backend: Backend, records: Sequence[dict[str, Any]], settings: VoteSettings
) -> list[VoteResult]:
    """One vote per record, all records in one backend stream (its in-flight window keeps the
    engine full; no fixed chunks whose tails leave it idle)."""
    by_index: dict[int, VoteResult] = {}
    # The JSON schema's letter enum depends on the option count: one schema per record.
    n_opts = [len(r.get("options") or []) for r in records]
    outputs = backend.chat(
        [choice_conversation(r) for r in records],
        n=settings.k,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_tokens=settings.max_tokens_choice,
        json_schemas=[choice_schema(n) if settings.constrained_choice and n else None for n in n_opts],
    )
    for i, (rec, n_opt, outs) in enumerate(zip(records, n_opts, outputs)):
        picks = [extract_choice_letter(o, n_opt, rec.get("options")) for o in outs]
        votes = [LETTERS[p] if p is not None else None for p in picks]
        label = rec.get("answer_index")
        target = LETTERS[label] if isinstance(label, int) and 0 <= label < n_opt else None
        majority, agreement, passed = decide(votes, target, settings.k, settings.threshold)
        by_index[i] = VoteResult(
            "multiple_choice_vote", settings.k, votes, target, majority, agreement, passed, list(outs)
        )
    return [by_index[i] for i in range(len(records))]


def vote_generative(
    backend: Backend, records: Sequence[dict[str, Any]], kind: str, settings: VoteSettings
) -> list[VoteResult]:
    """Majority of extracted answers vs the reference, for `math` and `short_answer` kinds."""
    extractor = get_extractor(kind)
    max_tokens = settings.max_tokens_math if kind == "math" else settings.max_tokens_short
    outputs = backend.chat(
        [generative_conversation(r, extractor.instruction) for r in records],
        n=settings.k,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_tokens=max_tokens,
    )
    results = []
    for rec, outs in zip(records, outputs):
        votes = [extractor.extract(o) for o in outs]
        target = extractor.reference(rec)
        majority, agreement, passed = decide(votes, target, settings.k, settings.threshold)
        results.append(VoteResult(f"{kind}_vote", settings.k, votes, target, majority, agreement, passed, list(outs)))
    return results


def _vote(backend: Backend, records: Sequence[dict[str, Any]], kind: str, settings: VoteSettings) -> list[VoteResult]:
    if kind == "multiple_choice":
        return vote_multiple_choice(backend, records, settings)
    return vote_generative(backend, records, kind, settings)


def panel_vote(
    members: Sequence[tuple[str, Backend]],
    records: Sequence[dict[str, Any]],
    kind: str,
    settings: VoteSettings,
    *,
    too_easy: bool = False,
) -> list[VoteResult]:
    """Every member votes k times on every record; the votes are pooled (k x members, same rule),
    and each member's own agreement is recorded. With `too_easy`, each member also answers once at
    temperature 0; an item every member answers right that way teaches nothing and is marked
    `too_easy` (as Nemotron's MCQ pipelines drop what every model gets right greedily).

    One member (the usual setup) is a plain vote with `members` and `greedy` recorded."""
    per_member = [(name, _vote(backend, records, kind, settings)) for name, backend in members]
    greedy: list[tuple[str, list[VoteResult]]] = []
    if too_easy:
        once = VoteSettings(**{**asdict(settings), "k": 1, "temperature": 0.0, "top_p": 1.0})
        greedy = [(name, _vote(backend, records, kind, once)) for name, backend in members]
    pooled = []
    k_total = settings.k * len(members)
    for i in range(len(records)):
        votes = [v for _, results in per_member for v in results[i].votes]
        outputs = [o for _, results in per_member for o in results[i].outputs]
        target = per_member[0][1][i].target
        majority, agreement, passed = decide(votes, target, k_total, settings.threshold)
        result = VoteResult(per_member[0][1][i].method, k_total, votes, target, majority, agreement, passed, outputs)
        result.members = [
            {"model": name, "agreement": results[i].agreement, "majority": results[i].majority}
            for name, results in per_member
        ]
        if greedy:
            answers = [results[i].votes[0] for _, results in greedy]
            result.greedy = [{"model": name, "answer": a} for (name, _), a in zip(greedy, answers)]
            result.too_easy = target is not None and all(a == target for a in answers)
        pooled.append(result)
    return pooled
