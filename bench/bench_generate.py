"""Generation throughput at the stage's DEFAULT settings vs bare vLLM, in one run.

What it measures (output tokens per second of wall time, medians over `--repeats` rounds):

  bare    `vllm.LLM.generate` over ALL prompts at once: the stage's own chat messages (from
          `SimilarQuestions.plan`) rendered with the model's chat template, and the stage's
          own SamplingParams (`VLLMBackend._params`), JSON-schema structured outputs included.
  stage   the real `GenerateAndEnrichStage`, enrichment off (its generation pass is what bare
          vLLM is compared with), at its config defaults (`load_config()` with only the
          overrides that bound CPU time: sampling.max_tokens and, on CPU, sampling.n), fed the
          way the pipeline feeds it: seeds cut into shards by task (`generate.shard_size`),
          `process_batch` over `generate.shards_per_call` shards per call, requests streamed
          through `VLLMBackend.stream` with the default `max_in_flight`, a fresh out_dir (so a
          fresh request cache: every request is sent) per round. Timed: plan (template
          rendering, request keys), cache lookups and commits, the stream, strict parsing.
  both sides share one in-process engine (backend injected into the stage); structured-output
          grammars are compiled once before measuring; bare and stage rounds alternate (order
          swapped every round, ABBA) and medians are reported. The pair is measured with
          structured outputs on (the default) and off, to show what constrained decoding costs
          (`--no-unstructured` skips the second pair).
  openai  after the in-process engine is closed (2 cores, little memory to spare), a real
          `python -m vllm.entrypoints.openai.api_server` with the same dtype/eager/max-model-len,
          and the same stage through `OpenAIBackend` at its default `max_concurrency`; compared
          with the in-process stage number. `--no-openai` skips it.

Run (no environment variables or arguments needed; ~40 min on 2 quiet CPU cores):

    .venv/bin/python bench/bench_generate.py
    .venv/bin/python bench/bench_generate.py --requests 64 --no-openai --no-unstructured   # ~6 min
    .venv/bin/python bench/bench_generate.py --requests 4096 --max-tokens 512   # a bigger GPU run

On CPU the engine runs fp32, enforce_eager, max_model_len 1024, a 1 GiB KV cache
(VLLM_CPU_KVCACHE_SPACE, unless already set) on every core (`cpu_threads_bind: all`). On a GPU
the config's engine defaults apply (dtype auto, CUDA graphs, max_model_len 4096 here) and the
default run is larger; tokens/s per GPU and GPU-hours per 1B output tokens are printed too.

Prints one JSON line per round, then a final table (tokens/s, ratios) and one verdict line per
goal: stage/bare >= 0.95 with structured outputs (the default) and without.
"""

from __future__ import annotations

import os

# Before vLLM is imported anywhere (it reads this at import): no INFO flood from the engine.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

# The shared mirror of real benchmark rows beside the checkout (../shared/fixtures/hf).
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "hf"

GOAL = 0.95
# On 2 CPU cores (fp32, structured outputs) a round is dominated by prefill: measured, 96 requests
# (~20k prompt tokens, n=4, 16 tokens each) took 291 s bare, 306 s through the stage. The default
# of 256 requests (the floor: enough to keep an engine's batch full) makes a round ~6-8
# min, one round per side and mode, ~40 min in all. n stays at its default (4: the request shape
# under test, n completions sharing one prefill). Replies are cut at 16 tokens, so structured
# replies rarely parse (few items kept): this measures throughput, not yield.
CPU_MAX_TOKENS = 16
CPU_OPENAI_TIMEOUT_S = 3600


def parse_args(gpu: bool):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="HF folder or name (default: the offline SmolLM2-135M-Instruct)")
    p.add_argument(
        "--requests",
        type=int,
        default=2000 if gpu else 256,
        help="seeds = requests (one request per seed), spread evenly over the 4 fixture tasks",
    )
    p.add_argument("--n", type=int, default=None, help="completions per request (default: the config's, 4)")
    p.add_argument("--max-tokens", type=int, default=None, help="default: 16 on CPU (time), the config's (512) on GPU")
    p.add_argument(
        "--repeats",
        type=int,
        default=1 if not gpu else 2,
        help="bare/stage round pairs per mode (order swapped every round); medians reported",
    )
    p.add_argument("--no-openai", action="store_true", help="skip the OpenAI-server part")
    p.add_argument(
        "--no-unstructured",
        action="store_true",
        help="skip the pair with structured outputs off (what constrained decoding costs)",
    )
    return p.parse_args()


# ---------------------------------------------------------------------------------------------
# Seeds and shards, as the pipeline cuts them
# ---------------------------------------------------------------------------------------------


def bench_seeds(requests: int) -> list[dict]:
    """`requests` fixture seeds, evenly over the four fixture tasks.

    The fixtures hold 200 rows per task. Beyond that a task's rows are reused with a suffix on
    the question (" (variant k)") and a fresh content id, so every seed is a distinct request
    (different messages, different request key): the stage dedups identical requests, which a
    plain repeat would turn into cache hits instead of work.
    """
    from nemo_taskseed.generate.fixture_seeds import FIXTURE_TASKS, fixture_seeds
    from nemo_taskseed.schema.records import content_id

    tasks = list(FIXTURE_TASKS)
    per = [requests // len(tasks) + (1 if i < requests % len(tasks) else 0) for i in range(len(tasks))]
    seeds: list[dict] = []
    for task, count in zip(tasks, per):
        _, dataset_path, config, split, _, _ = FIXTURE_TASKS[task]
        path = FIXTURES / dataset_path / config / f"{split}.jsonl"
        with open(path, encoding="utf-8") as fh:
            available = sum(1 for line in fh if line.strip())
        base = fixture_seeds({task: min(count, available)}, fixtures_dir=FIXTURES)
        for i in range(count):
            seed = dict(base[i % len(base)])
            k = i // len(base)
            if k:
                seed["question"] = f"{seed['question']} (variant {k})"
                seed["id"] = content_id(
                    task,
                    seed["question"],
                    seed["context"],
                    seed["options"],
                    seed["answer_index"],
                    seed["answer_text"],
                    k,
                )
            seeds.append(seed)
    return seeds


def shard_tasks(seeds: list[dict], shard_size: int) -> list:
    """Shard tasks as the pipeline's reader hands them to the model stage: by task, `shard_size`
    seeds each, named `<task>.<index>` (see generate/step.py `plan_shards`)."""
    from nemo_taskseed.generate.batches import to_batch
    from nemo_taskseed.pipeline.shards import shard_name

    grouped: dict[str, list[tuple[str, str, dict]]] = {}
    position: dict[str, int] = {}
    for s in seeds:
        i = position.get(s["task"], 0)
        position[s["task"]] = i + 1
        grouped.setdefault(shard_name(s["task"], i // shard_size), []).append((s["id"], "seed", s))
    return [to_batch(rows, name, {"shard": name, "fingerprint": "bench"}) for name, rows in sorted(grouped.items())]


# ---------------------------------------------------------------------------------------------
# The two sides
# ---------------------------------------------------------------------------------------------


class _Clock:
    """Where a stage round's wall time goes, measured from outside the stage (it runs unchanged):
    plan (templates, request keys), engine (waiting on `backend.stream` for the next completion),
    consumer (run_requests' loop body between completions: bookkeeping, cache commits, progress
    bar), finish (strict parsing of each reply, then the shard's duplicate check); the rest of the call is cache set-up/lookups and batch
    building. Wraps the stage's passes' methods and the backend's `stream` for one round."""

    def __init__(self, stage, backend):
        self.t = {"plan": 0.0, "engine": 0.0, "consumer": 0.0, "finish": 0.0}
        self.stage, self.backend = stage, backend
        self._timed(stage.questions, "plan", "plan")
        self._timed(stage.questions, "parse", "finish")
        self._timed(stage.questions, "finish", "finish")
        self._timed(stage.answers, "finish", "finish")
        inner = backend.stream

        def stream(requests):
            it = inner(requests)
            last = None
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    self.t["engine"] += time.perf_counter() - t0
                    return
                now = time.perf_counter()
                self.t["engine"] += now - t0
                last, parsing = now, self.t["finish"]
                yield item
                # Parsing a reply happens in the loop body (it starts its follow-ups): count it once.
                self.t["consumer"] += time.perf_counter() - last - (self.t["finish"] - parsing)

        backend.stream = stream  # instance attribute: shadows the method for this round only

    def _timed(self, owner, name, bucket):
        inner = getattr(owner, name)

        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return inner(*a, **kw)
            finally:
                self.t[bucket] += time.perf_counter() - t0

        setattr(owner, name, wrapper)

    def close(self):
        del self.backend.stream


def _stage(gen, backend, backend_config: dict, out_dir: str):
    """The real model stage with enrichment off: its generation pass (stage 3) is what is measured."""
    from nemo_taskseed.generate.settings import EnrichmentSettings
    from nemo_taskseed.generate.stages import GenerateAndEnrichStage

    no_enrichment = EnrichmentSettings(enabled=False, template="enrich", sampling=gen.sampling, variants=("answer",))
    stage = GenerateAndEnrichStage(
        generation=gen,
        enrichment=no_enrichment,
        backend_config=backend_config,
        out_dir=out_dir,
        backend=backend,
        shards_per_call=gen.shards_per_call,
    )
    stage.setup()
    return stage


def run_stage(gen, backend, backend_config: dict, tasks: list) -> dict:
    """One round of the real stage over every shard task, fresh cache; tokens from backend usage."""
    from nemo_taskseed.generate.batches import from_batch

    with tempfile.TemporaryDirectory(prefix="bench_gen_") as tmp:
        stage = _stage(gen, backend, backend_config, tmp)
        before = backend.usage.completion_tokens
        sent_before, prompt_before = backend.usage.requests, backend.usage.prompt_tokens
        cached_before = backend.usage.cached_prompt_tokens
        clock = _Clock(stage, backend)
        try:
            cpu0 = time.process_time()
            start = time.perf_counter()
            outs = []
            for i in range(0, len(tasks), stage.batch_size):  # Curator's batching: batch_size = shards_per_call
                outs += stage.process_batch(tasks[i : i + stage.batch_size])
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu0
        finally:
            clock.close()
        stage.teardown()
        kept = len({rec["lineage"]["item_id"] for out in outs for kind, rec in from_batch(out) if kind == "generated"})
        calls = math.ceil(len(tasks) / stage.batch_size)
    tokens = backend.usage.completion_tokens - before
    parts = {k: round(v, 2) for k, v in clock.t.items()}
    parts["other"] = round(elapsed - sum(clock.t.values()), 2)
    return {
        "tokens": tokens,
        "s": elapsed,
        "tok_s": tokens / elapsed,
        "kept": kept,
        "calls": calls,
        "sent": backend.usage.requests - sent_before,
        "prompt_tokens": backend.usage.prompt_tokens - prompt_before,
        "cached_prompt_tokens": backend.usage.cached_prompt_tokens - cached_before,
        "parts": parts,
        "main_cpu_s": cpu,
    }


def stage_requests(gen, backend, backend_config: dict, tasks: list) -> list:
    """The requests the stage sends for these shards (its own plan), in order."""
    from nemo_taskseed.generate.batches import from_batch

    stage = _stage(gen, backend, backend_config, ".")
    return [p.request for t in tasks for p in stage.questions.plan([r for k, r in from_batch(t) if k == "seed"])]


def bare_inputs(backend, requests: list) -> tuple[list[str], list]:
    tokenizer = backend.llm.get_tokenizer()
    prompts = [tokenizer.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in requests]
    return prompts, [backend._params(r) for r in requests]


def run_bare(backend, prompts: list[str], params: list) -> dict:
    cpu0 = time.process_time()
    start = time.perf_counter()
    outs = backend.llm.generate(prompts, params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
    return {
        "tokens": tokens,
        "s": elapsed,
        "tok_s": tokens / elapsed,
        "prompt_tokens": sum(len(o.prompt_token_ids or []) for o in outs),
        "cached_prompt_tokens": sum(int(o.num_cached_tokens or 0) for o in outs),
        "main_cpu_s": cpu,
    }


def _schema_key(schema) -> str:
    return json.dumps(schema, sort_keys=True)


def measure_pair(label: str, gen, backend, backend_config: dict, tasks: list, repeats: int) -> dict:
    """Grammar warm-up, then `repeats` bare/stage pairs (ABBA order), each round from a cold
    prefix cache; medians."""
    requests = stage_requests(gen, backend, backend_config, tasks)
    prompts, params = bare_inputs(backend, requests)
    # Warm-up: each distinct JSON schema's grammar compiles once (then vLLM's grammar cache serves
    # it); without this the first measured side would pay every compilation. One prompt per
    # schema is enough. Plus a small stage call: first-call imports and SQLite set-up are not
    # what is measured.
    t0 = time.perf_counter()
    first: dict[str, int] = {}
    for i, r in enumerate(requests):
        first.setdefault(_schema_key(r.json_schema), i)
    warm = [
        backend.sampling_params(
            n=1, temperature=0.0, top_p=1.0, max_tokens=4, json_schema=requests[i].json_schema, seed=None
        )
        for i in first.values()
    ]
    backend.llm.generate([prompts[i] for i in first.values()], warm, use_tqdm=False)
    run_stage(gen, backend, backend_config, [_head(tasks[0], 4)])
    schemas = sum(1 for r in first if r != "null")
    print(f"[{label}] warm-up {time.perf_counter() - t0:.1f}s ({schemas} distinct schemas)", flush=True)
    rounds = []
    for r in range(repeats):
        order = ("bare", "stage") if r % 2 == 0 else ("stage", "bare")
        row: dict = {"mode": label, "round": r}
        for side in order:
            # Every round starts from an empty prefix cache: 1 GiB of KV holds about a third of
            # the prompts, so whichever side ran second would otherwise find the other's last
            # prompts cached (a bias that depends on the two sides' request order).
            backend.llm.reset_prefix_cache()
            res = (
                run_bare(backend, prompts, params) if side == "bare" else run_stage(gen, backend, backend_config, tasks)
            )
            row[side] = res
            print(
                f"[{label}] round {r} {side}: {res['tokens']} tokens in {res['s']:.1f}s = {res['tok_s']:.1f} tok/s; "
                f"main-process CPU {res['main_cpu_s']:.1f}s"
                + (f"; stage wall split {res['parts']}" if "parts" in res else ""),
                flush=True,
            )
        row["ratio"] = row["stage"]["tok_s"] / row["bare"]["tok_s"]
        rounds.append(row)
        print(
            json.dumps(
                {
                    "mode": label,
                    "round": r,
                    "order": "/".join(order),
                    "bare_tok_s": round(row["bare"]["tok_s"], 1),
                    "bare_s": round(row["bare"]["s"], 1),
                    "bare_tokens": row["bare"]["tokens"],
                    "stage_tok_s": round(row["stage"]["tok_s"], 1),
                    "stage_s": round(row["stage"]["s"], 1),
                    "stage_tokens": row["stage"]["tokens"],
                    "stage_items_kept": row["stage"]["kept"],
                    "cached_prompt_tokens": [row["bare"]["cached_prompt_tokens"], row["stage"]["cached_prompt_tokens"]],
                    "ratio": round(row["ratio"], 3),
                }
            ),
            flush=True,
        )
    bare_tps = statistics.median(r["bare"]["tok_s"] for r in rounds)
    stage_tps = statistics.median(r["stage"]["tok_s"] for r in rounds)
    return {
        "mode": label,
        "requests": len(requests),
        "bare_tok_s": bare_tps,
        "stage_tok_s": stage_tps,
        "ratio": stage_tps / bare_tps,
        "ratios": [r["ratio"] for r in rounds],
        "rounds": rounds,
        # Same prompt tokens on both sides? (the stage's enqueue_chat renders the chat template itself)
        "bare_prompt_tokens": rounds[-1]["bare"]["prompt_tokens"],
        "stage_prompt_tokens": rounds[-1]["stage"]["prompt_tokens"],
        "stage_sent": rounds[-1]["stage"]["sent"],
        "calls": rounds[-1]["stage"]["calls"],
        "bare_s": statistics.median(r["bare"]["s"] for r in rounds),
        "stage_s": statistics.median(r["stage"]["s"] for r in rounds),
        "tokens": rounds[-1]["stage"]["tokens"],
        "parts": {k: statistics.median(r["stage"]["parts"][k] for r in rounds) for k in rounds[0]["stage"]["parts"]},
        "bare_cpu": statistics.median(r["bare"]["main_cpu_s"] for r in rounds),
        "stage_cpu": statistics.median(r["stage"]["main_cpu_s"] for r in rounds),
    }


def _head(task, k: int):
    """The first `k` seeds of a shard task, as a shard of its own (for the warm-up)."""
    from nemo_taskseed.generate.batches import from_batch, to_batch

    rows = [(r["id"], kind, r) for kind, r in from_batch(task)][:k]
    return to_batch(rows, "warmup", {"shard": "warmup", "fingerprint": "bench"})


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible server
# ---------------------------------------------------------------------------------------------


def measure_openai(overrides: list[str], model: str, engine: dict, tasks: list, repeats: int, gpu: bool) -> dict:
    from nemo_taskseed.config import load_config, to_container
    from nemo_taskseed.generate.settings import GenerationSettings
    from nemo_taskseed.llm.backends import build_backend
    from nemo_taskseed.llm.server import local_vllm_server

    log = Path(tempfile.mkdtemp(prefix="bench_gen_server_")) / "server.log"
    t0 = time.perf_counter()
    with local_vllm_server(
        model,
        log,
        dtype=engine["dtype"],
        max_model_len=engine["max_model_len"],
        enforce_eager=engine["enforce_eager"],
        cpu_threads_bind=engine.get("cpu_threads_bind"),  # the in-process side's cores
    ) as base:
        print(f"[openai] server up in {time.perf_counter() - t0:.1f}s at {base} (log {log})", flush=True)
        extra = (
            []
            if gpu
            else [
                # The default per-request timeout (120 s) counts from the send: with max_concurrency
                # 256 all requests are sent at once and, on 2 CPU cores, the last ones finish minutes
                # later; they would time out, be retried and re-queued. Not what is measured here.
                f"generate.backend.openai.timeout_s={CPU_OPENAI_TIMEOUT_S}"
            ]
        )
        cfg = load_config(
            overrides=[
                *overrides,
                "generate.backend.kind=openai",
                f"generate.backend.model={model}",
                f"generate.backend.openai.base_url={base}/v1",
                *extra,
            ]
        )
        gen = GenerationSettings.from_config(cfg)
        backend_config = to_container(cfg)["generate"]["backend"]
        backend = build_backend(backend_config)
        try:
            requests = stage_requests(gen, backend, backend_config, tasks)
            # Grammar warm-up on the server too: one prompt per distinct schema (n=1, 4 tokens).
            first: dict[str, object] = {}
            for r in requests:
                first.setdefault(_schema_key(r.json_schema), r)
            t1 = time.perf_counter()
            backend.chat(
                [r.messages for r in first.values()],
                n=1,
                temperature=0.0,
                top_p=1.0,
                max_tokens=4,
                json_schemas=[r.json_schema for r in first.values()],
            )
            run_stage(gen, backend, backend_config, [_head(tasks[0], 4)])
            print(f"[openai] warm-up {time.perf_counter() - t1:.1f}s", flush=True)
            rounds = []
            for r in range(repeats):
                res = run_stage(gen, backend, backend_config, tasks)
                rounds.append(res)
                print(
                    json.dumps(
                        {
                            "mode": "openai",
                            "round": r,
                            "stage_tok_s": round(res["tok_s"], 1),
                            "stage_s": round(res["s"], 1),
                            "stage_tokens": res["tokens"],
                            "stage_items_kept": res["kept"],
                            "sent": res["sent"],
                            "cached_prompt_tokens": res["cached_prompt_tokens"],
                        }
                    ),
                    flush=True,
                )
        finally:
            backend.close()
    return {
        "stage_tok_s": statistics.median(r["tok_s"] for r in rounds),
        "stage_s": statistics.median(r["s"] for r in rounds),
        "tokens": rounds[-1]["tokens"],
        "max_concurrency": backend_config["openai"]["max_concurrency"],
        "timeout_s": backend_config["openai"]["timeout_s"],
        "rounds": rounds,
    }


# ---------------------------------------------------------------------------------------------


def sampling_overrides(args, gpu: bool) -> tuple[list[str], str]:
    """The stage at its defaults: only what bounds CPU time is overridden (shards_per_call,
    shard_size and backend.vllm.max_in_flight stay at the config's values: they are under test).
    Returns the overrides and the note that says so ("" when nothing is bounded)."""
    overrides = []
    if args.n is not None:
        overrides.append(f"generate.sampling.n={args.n}")
    max_tokens = args.max_tokens or (None if gpu else CPU_MAX_TOKENS)
    if max_tokens:
        overrides.append(f"generate.sampling.max_tokens={max_tokens}")
    note = (
        ""
        if gpu and args.max_tokens is None
        else f"CPU-bounded: {' '.join(overrides)} (config default max_tokens 512); every other generate.* "
        "setting is the config's"
    )
    return overrides, note


def engine_overrides(gpu: bool) -> list[str]:
    """On CPU what vllm-cpu needs on this machine; on GPU the config's defaults + a longer context."""
    if gpu:
        return ["generate.backend.vllm.max_model_len=4096"]
    return [
        "generate.backend.vllm.dtype=float32",
        "generate.backend.vllm.enforce_eager=true",
        "generate.backend.vllm.max_model_len=1024",
        "generate.backend.vllm.kv_cache_space_gb=1",
        "generate.backend.vllm.cpu_threads_bind=all",
    ]


def measure_in_process(backend_config: dict, engine: dict, gen, gen_off, tasks: list, args) -> dict:
    """Bare vLLM vs the stage on one in-process engine, structured outputs on (and off unless
    --no-unstructured); the engine is closed and collected before returning."""
    from nemo_taskseed.llm.backends import build_backend

    t0 = time.perf_counter()
    backend = build_backend(backend_config)  # one engine for both sides
    print(
        f"engine start: {time.perf_counter() - t0:.1f}s  dtype={engine['dtype']} eager={engine['enforce_eager']} "
        f"max_model_len={engine['max_model_len']} VLLM_CPU_KVCACHE_SPACE={os.environ.get('VLLM_CPU_KVCACHE_SPACE')} "
        f"VLLM_CPU_OMP_THREADS_BIND={os.environ.get('VLLM_CPU_OMP_THREADS_BIND')}",
        flush=True,
    )
    results = {}
    try:
        results["on"] = measure_pair("structured", gen, backend, backend_config, tasks, args.repeats)
        if not args.no_unstructured:
            results["off"] = measure_pair("unstructured", gen_off, backend, backend_config, tasks, args.repeats)
    finally:
        backend.close()
        del backend
        import gc

        gc.collect()
    return results


def print_table(
    on: dict, off: dict | None, openai: dict | None, gen, engine: dict, tasks: list, args, gpu: bool, n_note: str
) -> None:
    """The final table: tokens/s and ratios per side, the OpenAI server's line, per-GPU figures."""
    gpus = int(engine.get("tensor_parallel_size") or 1) if gpu else 0
    print(
        f"=== generation stage at its defaults vs bare vLLM.generate: {on['requests']} requests in {len(tasks)} "
        f"shards, {on['calls']} process_batch call(s) (shards_per_call={gen.shards_per_call}, "
        f"max_in_flight={engine['max_in_flight']}), n={gen.sampling['n']}, max_tokens={gen.sampling['max_tokens']}, "
        f"medians of {args.repeats} round(s) per side ==="
    )
    if n_note:
        print(f"NOTE: {n_note}")
    head = (
        f"{'':<30}{'bare tok/s':>11}{'stage tok/s':>12}{'ratio':>8}{'bare s':>8}{'stage s':>8}{'tokens':>8}   per-round"
    )
    print(head)
    print("-" * len(head))
    for res, name in ((on, "structured outputs ON (dflt)"), (off, "structured outputs OFF")):
        if res is None:
            continue
        print(
            f"{name:<30}{res['bare_tok_s']:>11.1f}{res['stage_tok_s']:>12.1f}{res['ratio']:>8.3f}"
            f"{res['bare_s']:>8.1f}{res['stage_s']:>8.1f}{res['tokens']:>8}   "
            + " ".join(f"{x:.3f}" for x in res["ratios"])
        )
    if off is not None:
        print(
            f"{'structured ON / OFF tok/s':<30}{on['bare_tok_s'] / off['bare_tok_s']:>11.3f}"
            f"{on['stage_tok_s'] / off['stage_tok_s']:>12.3f}{'':>8}{'':>8}{'':>8}{'':>8}   cost of constrained decoding"
        )
    if openai is not None:
        print(
            f"{'stage over OpenAI server':<30}{'':>11}{openai['stage_tok_s']:>12.1f}"
            f"{openai['stage_tok_s'] / on['stage_tok_s']:>8.3f}{'':>8}{openai['stage_s']:>8.1f}{openai['tokens']:>8}"
            f"   ratio = vs in-process stage (ON); max_concurrency={openai['max_concurrency']}, "
            f"timeout_s={openai['timeout_s']}"
        )
    if gpu:
        per_gpu = on["stage_tok_s"] / max(gpus, 1)
        print(
            f"per GPU ({gpus} GPU(s) per engine): {per_gpu:.1f} output tok/s -> "
            f"{1e9 / per_gpu / 3600:.1f} GPU-hours per 1B output tokens (stage, structured outputs ON)"
        )


def print_details_and_verdicts(on: dict, off: dict | None, wall0: float) -> None:
    """Where the stage's wall time went, prompt tokens and requests, then one verdict per goal."""
    for res, name in ((on, "ON"), (off, "OFF")):
        if res is not None:
            print(
                f"structured {name}: stage wall split (medians, s): "
                + ", ".join(f"{k} {v:.1f}" for k, v in res["parts"].items())
                + f"; main-process CPU s: bare {res['bare_cpu']:.1f}, stage {res['stage_cpu']:.1f}"
            )
    print(
        f"per round: prompt tokens bare {on['bare_prompt_tokens']} / stage {on['stage_prompt_tokens']}; "
        f"requests sent by the stage {on['stage_sent']} (fresh cache: all misses); prefix cache reset before "
        f"every in-process round"
    )
    print()
    for res, name in (
        (on, "stage/bare, structured outputs ON (default)"),
        (off, "stage/bare, structured outputs OFF"),
    ):
        if res is None:
            continue
        ok = res["ratio"] >= GOAL
        print(f"goal {name}: ratio {res['ratio']:.3f} {'>=' if ok else '<'} {GOAL}: {'PASS' if ok else 'FAIL'}")
    print(f"total wall: {time.perf_counter() - wall0:.0f}s")


def main() -> None:
    wall0 = time.perf_counter()
    # A plain `kill` ends the run through the finally blocks (engine shut down, server group killed).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import torch

    gpu = torch.cuda.is_available()
    args = parse_args(gpu)
    from nemo_taskseed.config import load_config, to_container
    from nemo_taskseed.generate.settings import GenerationSettings

    model = args.model
    if model is None:
        from nemo_taskseed.models import prepare_model

        model = str(prepare_model())

    sampling, n_note = sampling_overrides(args, gpu)
    engine_args = engine_overrides(gpu)
    overrides = [*sampling, f"generate.backend.model={model}"]
    cfg = load_config(overrides=[*overrides, *engine_args])
    config = to_container(cfg)
    gen = GenerationSettings.from_config(cfg)
    gen_off = GenerationSettings.from_config(
        load_config(overrides=[*overrides, *engine_args, "generate.structured_outputs=false"])
    )
    backend_config = config["generate"]["backend"]
    engine = backend_config["vllm"]
    shard_size = int(config["generate"]["shard_size"])

    seeds = bench_seeds(args.requests)
    tasks = shard_tasks(seeds, shard_size)
    print(
        f"model={model} gpu={gpu} requests={len(seeds)} shards={len(tasks)} (shard_size={shard_size}) "
        f"shards_per_call={gen.shards_per_call} max_in_flight={engine['max_in_flight']} sampling={gen.sampling} "
        f"structured_outputs={gen.structured_outputs}",
        flush=True,
    )
    if n_note:
        print(f"NOTE: {n_note}", flush=True)

    results = measure_in_process(backend_config, engine, gen, gen_off, tasks, args)
    openai = None
    if not args.no_openai:
        openai = measure_openai(overrides, model, engine, tasks, max(1, args.repeats // 2), gpu)

    # ----------------------------------------------------------------- final table + verdicts
    from _results import publish_output  # bench/_results.py: the table below also goes into docs/benchmarks.md

    print()
    with publish_output("generate"):
        print_table(results["on"], results.get("off"), openai, gen, engine, tasks, args, gpu, n_note)
        print_details_and_verdicts(results["on"], results.get("off"), wall0)


if __name__ == "__main__":  # vLLM spawns workers: building the engine must not run on import
    main()
