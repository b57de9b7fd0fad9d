"""The test session's one vLLM engine, as config overrides. `conftest.py` builds the engine from
them through the real config path (`build_backend`), and a module that runs the generate step on
that engine passes them too, so the step's config describes the engine it runs on."""

ENGINE_OVERRIDES = [
    "generate.backend.vllm.dtype=float32",
    "generate.backend.vllm.max_model_len=1024",
    "generate.backend.vllm.enforce_eager=true",
    "generate.backend.vllm.kv_cache_space_gb=1",
    "generate.backend.vllm.cpu_threads_bind=all",  # the 135M model on both cores
    "generate.backend.vllm.engine_core_in_process=true",  # as the default job: ~40 s less to start and stop
]
