"""Requests through the cache: build keyed requests, send only the misses, commit as they finish.

Every model-calling stage (generation, enrichment, verification) goes through `run_requests`, so
resume, statistics and per-request seeds mean the same thing everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nemo_taskseed.llm.backends import Backend
from nemo_taskseed.llm.cache import RequestCache, request_key



@dataclass
class Request:
    key: str
    messages: list[dict]
    sampling: dict[str, Any]
    json_schema: dict | None


@dataclass
class RequestStats:
    total: int = 0
    cached: int = 0
    sent: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def sampling_of(section: dict) -> dict[str, Any]:
    """The sampling parameters that shape a reply (and therefore belong in the request key)."""
    return {
        "n": int(section.get("n", 1)),
        "temperature": float(section.get("temperature", 0.0)),
        "top_p": float(section.get("top_p", 1.0)),
        "max_tokens": int(section.get("max_tokens", 512)),
        "seed": section.get("seed"),
    }


def make_request(messages, model: str, sampling: dict, json_schema: dict | None) -> Request:
    return Request(request_key(messages, model, sampling, json_schema), messages, sampling, json_schema)


def run_requests(
    requests: list[Request], backend: Backend, cache: RequestCache, *, chunk_size: int,
    stats: RequestStats, desc: str = "requests",
) -> dict[str, dict]:
    """{key: {"outputs": [...], "backend": name}} for every request; only cache misses are sent,
    committed to the cache one chunk at a time."""
    from tqdm import tqdm

    unique: dict[str, Request] = {}
    for r in requests:
        unique.setdefault(r.key, r)
    results = cache.get_many(list(unique))
    stats.total += len(unique)
    stats.cached += len(results)
    missing = [r for k, r in unique.items() if k not in results]
    if not missing:
        return results
    # Requests in one backend call share sampling; schemas go per request, so a batch can mix
    # 4- and 5-option multiple choice with math and code in one `LLM.chat` call.
    groups: dict[str, list[Request]] = {}
    for r in missing:
        groups.setdefault(json.dumps(r.sampling, sort_keys=True), []).append(r)
    with tqdm(total=len(missing), desc=desc, unit="req", leave=False) as bar:
        for group in groups.values():
            for start in range(0, len(group), chunk_size):
                chunk = group[start:start + chunk_size]
                s = chunk[0].sampling
                seed = s.get("seed")
                outputs = backend.chat(
                    [r.messages for r in chunk], n=s["n"], temperature=s["temperature"], top_p=s["top_p"],
                    max_tokens=s["max_tokens"], json_schemas=[r.json_schema for r in chunk],
                    # Per-request seeds derived from the key make sampling reproducible per request
                    # (where the backend honours them), whatever else shares the batch.
                    seeds=[None if seed is None else (int(seed) + int(r.key[:8], 16)) % 2**31 for r in chunk],
                )
                entries = {r.key: (out, backend.name) for r, out in zip(chunk, outputs)}
                cache.put_many(entries)
                stats.sent += len(chunk)
                for k, (out, name) in entries.items():
                    results[k] = {"outputs": out, "backend": name}
                bar.update(len(chunk))
    return results
