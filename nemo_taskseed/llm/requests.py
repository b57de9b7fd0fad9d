"""Requests through the cache: build keyed requests, send only the misses, commit as they finish.

Every model-calling stage (generation, enrichment, verification) goes through `run_requests`, so
resume, statistics and per-request seeds mean the same thing everywhere.

Requests stream through the backend (`Backend.stream`): the engine holds up to `max_in_flight` of
them and each finished one is committed to its cache within `COMMIT_INTERVAL_S`. A kill -9 loses
at most the requests in flight plus those finished in the last interval; a restart re-sends only
those.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.llm.backends import Backend, Request, Usage
from nemo_taskseed.llm.cache import RequestCache, request_key

# One SQLite transaction (one fsync) per interval instead of per request: at GPU rates of hundreds
# of requests per second a commit each would make the cache, not the engine, the bottleneck
# (worse on NFS/Lustre, where an fsync takes milliseconds).
COMMIT_INTERVAL_S = 1.0

__all__ = [
    "COMMIT_INTERVAL_S",
    "GroupResult",
    "Request",
    "RequestStats",
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


@dataclass
class GroupResult:
    """What one group (a shard) of a `run_requests` call got: replies by key, its counts and usage."""

    results: dict[str, dict] = field(default_factory=dict)
    stats: RequestStats = field(default_factory=RequestStats)
    usage: Usage = field(default_factory=Usage)


def sampling_of(section: dict) -> dict[str, Any]:
    """The sampling parameters that shape a reply (and therefore belong in the request key)."""
    return {
        "n": int(section.get("n", 1)),
        "temperature": float(section.get("temperature", 0.0)),
        "top_p": float(section.get("top_p", 1.0)),
        "max_tokens": int(section.get("max_tokens", 512)),
        "seed": section.get("seed"),
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


def run_requests(
    groups: dict[str, list[Request]],
    backend: Backend,
    caches: dict[str, RequestCache],
    *,
    desc: str = "requests",
) -> dict[str, GroupResult]:
    """Every group's requests answered: {group: GroupResult}. Groups are shards, each with its own
    cache; only requests missing from their group's cache are sent (a request two groups share is
    sent once and committed to both), all through one stream, so a call over several small shards
    keeps the engine as full as one large shard would."""
    from tqdm import tqdm

    out = {g: GroupResult() for g in groups}
    wanted: dict[str, Request] = {}
    owners: dict[str, list[str]] = {}
    for g, requests in groups.items():
        unique = {r.key: r for r in requests}
        cached = caches[g].get_many(list(unique))
        out[g].results.update(cached)
        out[g].stats.total += len(unique)
        out[g].stats.cached += len(cached)
        for key, r in unique.items():
            if key not in cached:
                wanted.setdefault(key, r)
                owners.setdefault(key, []).append(g)
    if not wanted:
        return out
    todo = sorted(wanted.values(), key=_prefix_order)
    buffer: dict[str, list[tuple[str, tuple[list[str], str]]]] = {}

    def flush() -> None:
        for g, entries in buffer.items():
            caches[g].put_many(dict(entries))
        buffer.clear()

    last = time.monotonic()
    try:
        with tqdm(total=len(todo), desc=desc, unit="req", leave=False, dynamic_ncols=True) as bar:
            for done in backend.stream(todo):
                key = done.request.key
                for i, g in enumerate(owners[key]):
                    if done.error is not None:
                        # Not cached: a rerun with other settings (a longer context) may succeed.
                        out[g].results[key] = {"outputs": [], "backend": backend.name, "error": done.error}
                        out[g].stats.refused += 1
                        continue
                    buffer.setdefault(g, []).append((key, (done.texts, backend.name)))
                    out[g].results[key] = {"outputs": done.texts, "backend": backend.name}
                    out[g].stats.sent += 1
                    if i == 0:  # tokens were spent once, whoever else shares the request
                        out[g].usage.add(done.usage)
                bar.update(1)
                if time.monotonic() - last >= COMMIT_INTERVAL_S:
                    flush()
                    last = time.monotonic()
    finally:
        flush()  # what finished before a failure is kept
    return out
