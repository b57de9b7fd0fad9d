"""The one LLM client interface every model-calling stage uses (generation, enrichment, voting,
the paraphrase judge).

    backend = build_backend(cfg)     # in-process vLLM or OpenAI-compatible endpoint(s)
    backend.stream(requests)         # completions as they finish, max_in_flight at a time
    backend.chat(conversations, n=..., temperature=..., ...) -> list[list[str]]
    run_requests(groups, backend, caches, follow_up=None)   # cache misses only, one stream over
                                     # several shards; follow_up adds a reply's next requests
    RequestSession(cache).ask(backend, requests)   # the same for one shard's votes / verdicts
    RequestCache(path)               # finished requests by content hash, one SQLite file per shard
    cost.stage_cost / cost.project   # tokens, engine time, GPU-hours; projections to a full run

It sits below `generate/` and `filter/` (both import it; it imports neither), so the verifier and
the generator share one definition of a backend instead of a Protocol copy each.
"""

from nemo_taskseed.llm.backends import Backend, BackendUnavailable, build_backend
from nemo_taskseed.llm.cache import RequestCache, request_key

__all__ = ["Backend", "BackendUnavailable", "RequestCache", "build_backend", "request_key"]
