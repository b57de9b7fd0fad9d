"""Generation throughput: our similar-question stage vs bare `vllm.LLM.generate`, same run.

Both sides share one engine, the same prompts (the stage's chat messages rendered with the
model's chat template) and the same sampling parameters, including the JSON-schema structured
outputs the stage asks for. The stage side includes everything the stage does per request:
template rendering, request-cache lookups and commits (a fresh cache, so every request is sent),
strict parsing. Prints output tokens/s for both and the ratio (goal: >= 0.9).

    python bench/bench_generate.py                       # CPU defaults here (fp32, eager, 1024)
    python bench/bench_generate.py --seeds-per-task 64 --n 4 --max-tokens 512   # on a GPU

Runs unchanged on a GPU: dtype/eager/max-model-len default to GPU-friendly values there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="HF folder or name (default: the offline SmolLM2-135M-Instruct)")
    p.add_argument("--seeds-per-task", type=int, default=4, help="seeds from each of arc_easy, commonsense_qa, gsm8k, mbpp")
    p.add_argument("--n", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--repeats", type=int, default=3, help="alternating bare/stage rounds; medians reported")
    p.add_argument("--dtype", default=None)
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--enforce-eager", action="store_true", default=None)
    p.add_argument("--no-structured-outputs", action="store_true")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    from nemo_taskseed.llm.backends import VLLMBackend, VLLMSettings
    from nemo_taskseed.generate.fixture_seeds import fixture_seeds
    from nemo_taskseed.generate.prompts import load_templates, seed_fields, select_template_id
    from nemo_taskseed.generate.parsers import reply_schema
    from nemo_taskseed.config import load_config
    from nemo_taskseed.generate.stages import GenerationSettings, SimilarQuestionStage, from_batch, to_batch

    import torch

    gpu = torch.cuda.is_available()
    model = args.model
    if model is None:
        from nemo_taskseed.models import prepare_model

        model = str(prepare_model())
    settings = VLLMSettings(
        model=model,
        dtype=args.dtype or ("auto" if gpu else "float32"),
        max_model_len=args.max_model_len or (4096 if gpu else 1024),
        enforce_eager=bool(args.enforce_eager) if args.enforce_eager is not None else not gpu,
        kv_cache_space_gb=None if gpu else float(os.environ.get("VLLM_CPU_KVCACHE_SPACE", 1)),
    )
    t0 = time.perf_counter()
    backend = VLLMBackend(settings)
    print(f"engine start: {time.perf_counter() - t0:.1f}s  model={model}  gpu={gpu}", flush=True)

    per = args.seeds_per_task
    seeds = fixture_seeds({"arc_easy": per, "commonsense_qa": per, "gsm8k": per, "mbpp": per})
    structured = not args.no_structured_outputs
    sampling = {"n": args.n, "temperature": args.temperature, "top_p": args.top_p,
                "max_tokens": args.max_tokens, "seed": 0}
    gen_settings = GenerationSettings.from_config(load_config(overrides=[
        *(f"generate.sampling.{k}={v}" for k, v in sampling.items()), f"generate.structured_outputs={structured}",
        f"generate.chunk_size={len(seeds)}"]))

    # The exact prompts and sampling params the stage sends, for the bare side.
    templates = load_templates()
    tokenizer = backend.llm.get_tokenizer()
    prompts, params = [], []
    for seed in seeds:
        template = templates[select_template_id(seed)]
        messages = template.render(**seed_fields(seed, template, []))
        prompts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        schema = reply_schema(template.output, len(seed.get("options") or []), bool(seed.get("context")))
        params.append(backend.sampling_params(n=args.n, temperature=args.temperature, top_p=args.top_p,
                                              max_tokens=args.max_tokens,
                                              json_schema=schema if structured else None, seed=None))

    def bare() -> tuple[int, float]:
        start = time.perf_counter()
        outs = backend.llm.generate(prompts, params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        return sum(len(c.token_ids) for o in outs for c in o.outputs), elapsed

    def stage() -> tuple[int, float, int]:
        with tempfile.TemporaryDirectory() as tmp:
            st = SimilarQuestionStage(settings=gen_settings, backend_config={"kind": "vllm"}, out_dir=tmp,
                                      backend=backend)
            st.setup()
            before = backend.usage.completion_tokens
            start = time.perf_counter()
            out = st.process(to_batch([(s["id"], "seed", s) for s in seeds], "bench", {"shard": "bench"}))
            elapsed = time.perf_counter() - start
            st.teardown()
            kept = sum(1 for kind, _ in from_batch(out) if kind == "item")
            return backend.usage.completion_tokens - before, elapsed, kept

    # Warm-up on every prompt: structured-output grammars compile once per schema, then are cached;
    # without this the first measured side pays all compilations.
    warm = [backend.sampling_params(n=1, temperature=0.0, top_p=1.0, max_tokens=4,
                                    json_schema=p.structured_outputs.json if p.structured_outputs else None, seed=None)
            for p in params]
    backend.llm.generate(prompts, warm, use_tqdm=False)

    rows = []
    for r in range(args.repeats):
        bt, bs = bare()
        stt, sts, kept = stage()
        rows.append({"round": r, "bare_tokens": bt, "bare_s": round(bs, 2), "bare_tok_s": round(bt / bs, 1),
                     "stage_tokens": stt, "stage_s": round(sts, 2), "stage_tok_s": round(stt / sts, 1),
                     "stage_items_kept": kept})
        print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        row["ratio"] = round(row["stage_tok_s"] / row["bare_tok_s"], 3)
    bare_tps = statistics.median(r["bare_tok_s"] for r in rows)
    stage_tps = statistics.median(r["stage_tok_s"] for r in rows)
    print(json.dumps({
        "prompts": len(prompts), "n": args.n, "max_tokens": args.max_tokens, "structured_outputs": structured,
        "bare_vllm_tok_s": bare_tps, "stage_tok_s": stage_tps, "ratio_of_medians": round(stage_tps / bare_tps, 3),
        "ratio_per_round": [r["ratio"] for r in rows],
    }))
    backend.close()


if __name__ == "__main__":  # vLLM spawns workers: building the engine must not run on import
    main()
