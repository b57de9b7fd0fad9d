"""Answer verification by majority vote of k sampled answers, and code checks in the sandbox.

The backend is a `nemo_taskseed.llm.Backend` (`build_backend(cfg)`: in-process vLLM or an
OpenAI-compatible endpoint). The model never sees the proposed label. Votes are asked through a
`RequestSession` (one request per record and verifier, its k samples as `n`): given the shard's
cache, a restarted shard asks only what it had not asked before.

Rule: an item passes when the label (or reference answer) has at least `threshold * k` votes and
strictly more votes than any other answer. Unparseable samples count as votes against. The
agreement rate (votes for the label / k) is recorded on every voted item, kept or not.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from nemo_taskseed.config import section_settings
from nemo_taskseed.errors import UserError
from nemo_taskseed.llm.backends import Backend
from nemo_taskseed.llm.requests import Request, RequestSession, ask, check_sampling, make_request
from nemo_taskseed.registry import extract_choice_letter, get_extractor

LETTERS = string.ascii_uppercase


@dataclass(frozen=True)
class VoteSettings:
    """`filter.verify.vote` (configs/base/filter.yaml holds the defaults and says why)."""

    k: int
    temperature: float
    top_p: float
    threshold: float
    max_tokens_choice: int
    max_tokens_math: int
    max_tokens_short: int
    constrained_choice: bool  # JSON-schema decoding of {"answer": <letter>}
    seed: int | None  # base of the per-request seeds (where the platform honours them)

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> VoteSettings:
        """From the full config or its `filter.verify.vote` section; `overrides` replace fields."""
        values = {**section_settings(cls, cfg, "filter.verify.vote"), **overrides}
        return cls(**values).checked()

    def checked(self) -> VoteSettings:
        """Settings vLLM would refuse only once the engine is up, as a config error now."""
        where = "filter.verify.vote"
        if int(self.k) < 1:
            raise UserError(f"{where}.k must be >= 1, got {self.k}")
        if int(self.k) > 1 and float(self.temperature) == 0:
            raise UserError(
                f"{where}.k={self.k} with {where}.temperature=0 asks for {self.k} identical greedy "
                "answers (vLLM refuses it): set k=1 or a temperature > 0"
            )
        if not 0 < float(self.threshold) <= 1:
            raise UserError(f"{where}.threshold must be in (0, 1], got {self.threshold}")
        for name in ("max_tokens_choice", "max_tokens_math", "max_tokens_short"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"{where}.{name} must be >= 1, got {getattr(self, name)}")
        check_sampling(self.sampling(1), where)  # temperature and top_p
        return self

    def sampling(self, max_tokens: int) -> dict[str, Any]:
        """The request's sampling (part of its cache key): k samples of one prompt."""
        return {
            "n": int(self.k),
            "temperature": float(self.temperature),
            "top_p": float(self.top_p),
            "max_tokens": int(max_tokens),
            "seed": self.seed,
        }


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


def vote_request(record: dict[str, Any], kind: str, settings: VoteSettings, verifier: str) -> Request:
    """The one request that asks `verifier` (a model name, part of the cache key) k times."""
    if kind == "multiple_choice":
        n_opt = len(record.get("options") or [])
        # The JSON schema's letter enum depends on the option count: one schema per record.
        schema = choice_schema(n_opt) if settings.constrained_choice and n_opt else None
        return make_request(
            choice_conversation(record), verifier, settings.sampling(settings.max_tokens_choice), schema
        )
    extractor = get_extractor(kind)
    max_tokens = settings.max_tokens_math if kind == "math" else settings.max_tokens_short
    return make_request(
        generative_conversation(record, extractor.instruction), verifier, settings.sampling(max_tokens), None
    )


def count_votes(record: dict[str, Any], kind: str, settings: VoteSettings, outputs: list[str]) -> VoteResult:
    """The record's votes parsed from its k sampled answers, and the keep rule applied."""
    if kind == "multiple_choice":
        n_opt = len(record.get("options") or [])
        picks = [extract_choice_letter(o, n_opt, record.get("options")) for o in outputs]
        votes = [LETTERS[p] if p is not None else None for p in picks]
        label = record.get("answer_index")
        target = LETTERS[label] if isinstance(label, int) and 0 <= label < n_opt else None
        method = "multiple_choice_vote"
    else:
        extractor = get_extractor(kind)
        target = extractor.reference(record)
        # An answer the kind counts as the same (math: an equivalent expression) votes for the target.
        votes = [target if extractor.same(v, target) else v for v in (extractor.extract(o) for o in outputs)]
        method = f"{kind}_vote"
    majority, agreement, passed = decide(votes, target, settings.k, settings.threshold)
    return VoteResult(method, settings.k, votes, target, majority, agreement, passed, list(outputs))


def vote(
    backend: Backend,
    records: Sequence[dict[str, Any]],
    kind: str,
    settings: VoteSettings,
    session: RequestSession | None = None,
    verifier: str | None = None,
) -> list[VoteResult]:
    """Each record's vote by one verifier (`kind`: multiple_choice, or a generative kind such as
    math or short_answer, whose answers the registry's extractor compares with the reference),
    all records in one stream (its in-flight window keeps the engine full; no fixed chunks whose
    tails leave it idle). A request the engine refuses gets no votes, which count against."""
    requests = [vote_request(r, kind, settings, verifier or backend.model) for r in records]
    replies = ask(backend, requests, session, desc="verify")
    return [count_votes(r, kind, settings, reply["outputs"]) for r, reply in zip(records, replies)]


def panel_vote(
    members: Sequence[tuple[str, Backend]],
    records: Sequence[dict[str, Any]],
    kind: str,
    settings: VoteSettings,
    *,
    too_easy: bool = False,
    session: RequestSession | None = None,
) -> list[VoteResult]:
    """Every member votes k times on every record; the votes are pooled (k x members, same rule),
    and each member's own agreement is recorded. With `too_easy`, each member also answers once at
    temperature 0; an item every member answers right that way teaches nothing and is marked
    `too_easy` (as Nemotron's MCQ pipelines drop what every model gets right greedily).

    Requests are keyed by the member's name, so two members that share one engine still vote
    independently. One member (the usual setup) is a plain vote with `members` and `greedy`
    recorded."""
    per_member = [(name, vote(backend, records, kind, settings, session, name)) for name, backend in members]
    greedy: list[tuple[str, list[VoteResult]]] = []
    if too_easy:
        once = replace(settings, k=1, temperature=0.0, top_p=1.0)
        greedy = [(name, vote(backend, records, kind, once, session, name)) for name, backend in members]
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
            answers = [results[i].votes[0] if results[i].votes else None for _, results in greedy]
            result.greedy = [{"model": name, "answer": a} for (name, _), a in zip(greedy, answers)]
            result.too_easy = target is not None and all(a == target for a in answers)
        pooled.append(result)
    return pooled
