"""Requests through the cache: build keyed requests, send only the misses, commit as they finish.

Generation and enrichment go through `run_requests`, one stream per call in which each seed's
enrichment requests follow its generation (`follow_up`), so resume, statistics and per-request
seeds mean the same thing for both passes. The filter's model calls (verification votes, the
paraphrase judge) go through a `RequestSession`: the same function over one shard's cache, so a
filter shard killed midway does not ask again what it already asked.

Requests stream through the backend (`Backend.stream`): the engine holds up to `max_in_flight` of
them and each finished one is committed to its cache within `COMMIT_INTERVAL_S`. A kill -9 loses
at most the requests in flight plus those finished in the last interval; a restart re-sends only
those.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.llm.backends import Backend, Completion, Request, RequestFeed, Usage
from nemo_taskseed.llm.cache import RequestCache, request_key

# One SQLite transaction (one fsync) per interval instead of per request: at GPU rates of hundreds
# of requests per second a commit each would make the cache, not the engine, the bottleneck
# (worse on NFS/Lustre, where an fsync takes milliseconds).
COMMIT_INTERVAL_S = 1.0

__all__ = [
    "COMMIT_INTERVAL_S",
    "FollowUp",
    "GroupResult",
    "Request",
    "RequestSession",
    "RequestStats",
    "ask",
    "check_sampling",
    "make_request",
    "run_requests",
    "sampling_of",
]


@dataclass
class RequestStats:
    total: int = 0
    cached: int = 0
    sent: int = 0
    refused: int = 0  # the engine refused the request itself (e.g. prompt longer than the context)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    def add(self, other: RequestStats) -> None:
        for name, value in other.__dict__.items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class GroupResult:
    """What one group (a shard) of a `run_requests` call got: replies by key, its counts and usage."""

    results: dict[str, dict] = field(default_factory=dict)
    stats: RequestStats = field(default_factory=RequestStats)
    usage: Usage = field(default_factory=Usage)


def sampling_of(section: dict, where: str) -> dict[str, Any]:
    """The sampling parameters that shape a reply (and therefore belong in the request key), from
    config section `where` (`generate.sampling`, `enrich.sampling`; configs/base sets them all)."""
    from nemo_taskseed.config import section_settings

    values = section_settings(None, section, where, ["n", "temperature", "top_p", "max_tokens", "seed"])
    return {
        "n": int(values["n"]),
        "temperature": float(values["temperature"]),
        "top_p": float(values["top_p"]),
        "max_tokens": int(values["max_tokens"]),
        "seed": values["seed"],
    }


def check_sampling(sampling: dict[str, Any], section: str) -> dict[str, Any]:
    """Settings vLLM would reject only after the engine has loaded, as a config error now."""
    if sampling["n"] < 1:
        raise UserError(f"{section}.n must be >= 1, got {sampling['n']}")
    if sampling["n"] > 1 and sampling["temperature"] == 0:
        raise UserError(
            f"{section}.n={sampling['n']} with {section}.temperature=0 asks for {sampling['n']} "
            "identical greedy completions (vLLM refuses it): set n=1 or a temperature > 0"
        )
    if sampling["temperature"] < 0:
        raise UserError(f"{section}.temperature must be >= 0, got {sampling['temperature']}")
    if not 0 < sampling["top_p"] <= 1:
        raise UserError(f"{section}.top_p must be in (0, 1], got {sampling['top_p']}")
    if sampling["max_tokens"] < 1:
        raise UserError(f"{section}.max_tokens must be >= 1, got {sampling['max_tokens']}")
    return sampling


def make_request(messages, model: str, sampling: dict, json_schema: dict | None) -> Request:
    key = request_key(messages, model, sampling, json_schema)
    base = sampling.get("seed")
    # A per-request seed derived from the key makes sampling reproducible per request (where the
    # backend honours it), whatever else shares the engine's batch.
    seed = None if base is None else (int(base) + int(key[:8], 16)) % 2**31
    return Request(key, messages, sampling, json_schema, seed)


def _prefix_order(r: Request) -> str:
    # Requests of one template share a long prefix (system prompt, instructions); sending them
    # together lets the engine's prefix cache hold that prefix while they run.
    return json.dumps(r.messages, sort_keys=True, ensure_ascii=False)


# follow_up(group, request, reply) -> {group: [requests]}: what a finished request leads to.
FollowUp = Callable[[Hashable, Request, dict], dict[Hashable, list[Request]]]


class _ReplyRouter:
    """The bookkeeping of one `run_requests` call: which groups asked for which requests, what is
    still to send, each reply handed to every group that asked for it, and the replies waiting to
    be committed to their group's cache."""

    def __init__(self, caches: dict[Hashable, RequestCache], follow_up: FollowUp | None):
        self.caches = caches
        self.follow_up = follow_up
        self.out = {g: GroupResult() for g in caches}
        self.asked: dict[Hashable, set[str]] = {g: set() for g in caches}
        self.owners: dict[str, list[Hashable]] = {}  # requests queued or in flight -> groups waiting for them
        self.finished: dict[str, dict] = {}  # replies this call got from the engine, for groups asking later
        self.to_send: list[Request] = []
        self.buffer: dict[Hashable, list[tuple[str, tuple[list[str], str]]]] = {}

    def settle(self, g: Hashable, request: Request, reply: dict) -> None:
        self.out[g].results[request.key] = reply
        if self.follow_up is not None:
            self.admit(self.follow_up(g, request, reply))

    def record(self, g: Hashable, request: Request, reply: dict) -> None:
        """A reply the engine produced in this call, for group g (not from g's cache)."""
        if reply.get("error") is not None:
            # Not cached: a rerun with other settings (a longer context) may succeed.
            self.out[g].stats.refused += 1
        else:
            self.buffer.setdefault(g, []).append((request.key, (reply["outputs"], reply["backend"])))
            self.out[g].stats.sent += 1
        self.settle(g, request, reply)

    def admit(self, new: dict[Hashable, list[Request]]) -> None:
        for g, requests in new.items():
            unique = {r.key: r for r in requests if r.key not in self.asked[g]}
            self.asked[g].update(unique)
            cached = self.caches[g].get_many(list(unique))
            self.out[g].stats.total += len(unique)
            self.out[g].stats.cached += len(cached)
            for key, r in unique.items():
                if key in cached:
                    self.settle(g, r, cached[key])
                elif key in self.finished:
                    self.record(g, r, self.finished[key])
                elif key in self.owners:
                    self.owners[key].append(g)
                else:
                    self.owners[key] = [g]
                    self.to_send.append(r)

    def receive(self, done: Completion, backend_name: str) -> None:
        """A request the engine finished (or refused): its reply to every group waiting for it."""
        key = done.request.key
        reply = {"outputs": done.texts, "backend": backend_name}
        if done.error is not None:
            reply = {"outputs": [], "backend": backend_name, "error": done.error}
        self.finished[key] = reply
        for i, g in enumerate(self.owners.pop(key)):
            if i == 0 and done.error is None:  # tokens were spent once, whoever else shares the request
                self.out[g].usage.add(done.usage)
            self.record(g, done.request, reply)

    def queued(self) -> list[Request]:
        batch = sorted(self.to_send, key=_prefix_order)
        self.to_send.clear()
        return batch

    def flush(self) -> None:
        for g, entries in self.buffer.items():
            self.caches[g].put_many(dict(entries))
        self.buffer.clear()


def run_requests(
    groups: dict[Hashable, list[Request]],
    backend: Backend,
    caches: dict[Hashable, RequestCache],
    *,
    desc: str = "requests",
    follow_up: FollowUp | None = None,
) -> dict[Hashable, GroupResult]:
    """Every group's requests answered: {group: GroupResult}, one per cache.

    Groups are (shard, pass) pairs or shards, each with its own cache; only requests missing
    from their group's cache are sent (a request two groups share is sent once and committed to
    both), all through one stream, so a call over several small shards keeps the engine as full
    as one large shard would.

    `follow_up` is called once per group and request as soon as its reply is known (from the
    cache, the engine, or a refusal, marked by "error"); the requests it returns join the same
    stream at once. Enrichment of a seed's items thus starts while other seeds still generate,
    instead of after the call's slowest generation.
    """
    from tqdm import tqdm

    router = _ReplyRouter(caches, follow_up)
    router.admit(groups)
    if not router.to_send:
        return router.out
    feed = RequestFeed(router.queued())
    last = time.monotonic()
    try:
        with tqdm(total=len(router.owners), desc=desc, unit="req", leave=False, dynamic_ncols=True) as bar:
            for done in backend.stream(feed):
                router.receive(done, backend.name)
                if router.to_send:
                    bar.total += len(router.to_send)
                    bar.refresh()
                    feed.add(router.queued())
                bar.update(1)
                if time.monotonic() - last >= COMMIT_INTERVAL_S:
                    router.flush()
                    last = time.monotonic()
    finally:
        router.flush()  # what finished before a failure is kept
    return router.out


class RequestSession:
    """One shard's model calls outside generation (verification votes, judge verdicts): every
    `ask` sends only the requests missing from the shard's cache, through `run_requests`, and the
    counts and token usage add up over the calls. Without a cache (a notebook, a unit test) the
    session keeps replies in memory for its own lifetime only."""

    def __init__(self, cache: RequestCache | None = None, *, desc: str = "requests"):
        self.cache = cache if cache is not None else RequestCache(RequestCache.IN_MEMORY)
        self.desc = desc
        self.stats = RequestStats()
        self.usage = Usage()

    @classmethod
    def for_shard(cls, cache_dir: str | None, shard: str, purpose: str) -> RequestSession:
        """The session of `shard`'s `purpose` requests, over its cache in `cache_dir` (None or
        "": no cache)."""
        cache = RequestCache.for_shard(cache_dir, shard, purpose) if cache_dir else None
        return cls(cache, desc=purpose)

    def ask(self, backend: Backend, requests: list[Request]) -> list[dict]:
        """Each request's reply, in request order: {"outputs": [...], "backend": ...} and, for a
        request the engine refused, "error" (its outputs are then empty)."""
        got = run_requests({0: list(requests)}, backend, {0: self.cache}, desc=self.desc)[0]
        self.stats.add(got.stats)
        self.usage.add(got.usage)
        return [got.results[r.key] for r in requests]

    def close(self) -> None:
        self.cache.close()

    def __enter__(self) -> RequestSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ask(backend: Backend, requests: list[Request], session: RequestSession | None = None, *, desc: str) -> list[dict]:
    """`session.ask`, or, without a session (a notebook, a unit test), a throwaway uncached one."""
    if session is not None:
        return session.ask(backend, requests)
    with RequestSession(desc=desc) as once:
        return once.ask(backend, requests)
