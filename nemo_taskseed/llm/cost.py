"""What model calls cost: per-stage accounting from measured usage, and projections to a full run.

Every model stage records per shard (in its done marker) the requests it sent, prompt, cached-prompt
and completion tokens, the wall time of the calls it took part in (apportioned between the shards
of a call by completion tokens) and GPU-seconds (that time x the GPUs its engine holds). Summed
over shards they give each stage's cost; `project` turns a finished run's rates into GPU-hours per
1M seeds and per 1B output tokens, and into the total for a target number of seeds.

The numbers are measurements of one run on one machine: CPU runs here measure tokens per seed
(a property of the model, prompts and sampling) but not GPU throughput, which must then come from
a GPU run's summary or be given (`--gpu-tokens-per-s`, with its source).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nemo_taskseed.errors import UserError

STAGES = ("generate", "enrich", "verify")


def stage_cost(usage: dict[str, Any], requests_total: int | None = None) -> dict[str, Any]:
    """One pass's accounting from its summed usage (see `GenerateAndEnrichStage.process_batch`:
    generation and enrichment run through one stream, so a call's engine time is split between
    them, and between shards, by completion tokens).

    `usage` counts the requests the engine answered (`requests`); `requests_total` counts every
    request the outputs needed, including replies read from the cache (sent by an earlier run,
    whose tokens were counted there). Per-seed projections scale the tokens per answered request
    to `requests_total`."""
    seconds = float(usage.get("seconds", 0.0))
    prompt = int(usage.get("prompt_tokens", 0))
    completion = int(usage.get("completion_tokens", 0))
    gpu_seconds = float(usage.get("gpu_seconds", 0.0))
    answered = int(usage.get("requests", 0))
    return {
        "requests_total": int(requests_total if requests_total is not None else answered),
        "requests": answered,
        "completions": int(usage.get("completions", 0)),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "engine_seconds": round(seconds, 1),
        "output_tokens_per_s": round(completion / seconds, 1) if seconds else None,
        "prefix_cache_hit_rate": round(int(usage.get("cached_prompt_tokens", 0)) / prompt, 4) if prompt else None,
        "gpu_hours": round(gpu_seconds / 3600, 4),
        "gpus_per_engine": round(gpu_seconds / seconds, 2) if seconds else 0.0,
    }


def read_costs(run_dir: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    """(seeds generated from, {stage: cost}) from a run folder (`generate/`, `filter/`) or a step folder."""
    run_dir = Path(run_dir)
    candidates = [run_dir / "generate" / "summary.json", run_dir / "summary.json"]
    gen_summary = next((p for p in candidates if p.is_file() and "seeds" in _read(p)), None)
    if gen_summary is None:
        raise UserError(
            f"{run_dir}: no generate summary (generate/summary.json) to estimate from; "
            "run `taskseed generate` (or `taskseed run`) first"
        )
    gen = _read(gen_summary)
    costs = dict(gen.get("cost") or {})
    if not costs:
        raise UserError(f"{gen_summary}: has no `cost` section (written by an older taskseed); re-run generate")
    filt = run_dir / "filter" / "summary.json"
    if filt.is_file() and (_read(filt).get("cost") or {}).get("verify"):
        costs["verify"] = _read(filt)["cost"]["verify"]
    return int(gen["seeds"]), costs


def stated_costs(tokens_per_seed: dict[str, float]) -> tuple[int, dict[str, dict[str, Any]]]:
    """(1 seed, {stage: cost}) from output tokens per seed the user states (no finished run to
    measure): the same shape `read_costs` gives, so `project` does the same arithmetic. Prompt
    tokens are not stated and show as 0."""
    costs = {}
    for stage, tokens in tokens_per_seed.items():
        if stage not in STAGES:
            raise UserError(f"unknown stage {stage!r} for tokens per seed; stages: {', '.join(STAGES)}")
        if tokens is None:
            continue
        if tokens <= 0:
            raise UserError(f"tokens per seed for {stage} must be > 0, got {tokens}")
        costs[stage] = {"completion_tokens": float(tokens), "prompt_tokens": 0, "requests": 1, "requests_total": 1}
    if not costs:
        raise UserError("give a finished RUN to measure, or --tokens-per-seed (and --gpu-tokens-per-s)")
    return 1, costs


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read summary: {exc}") from exc


def project(
    seeds_measured: int, costs: dict[str, dict[str, Any]], target_seeds: float, gpu_tokens_per_s: float | None = None
) -> dict[str, Any]:
    """Per stage: tokens per seed, output tokens and GPU-hours for `target_seeds`, GPU-hours per 1M
    seeds and per 1B output tokens, and the arithmetic behind each number."""
    if seeds_measured <= 0:
        raise UserError("the measured run generated from 0 seeds: nothing to project from")
    rows = {}
    for stage in STAGES:
        c = costs.get(stage)
        if not c or not c.get("completion_tokens") or not c.get("requests"):
            continue
        # Tokens per answered request x every request the outputs needed, per seed.
        per_seed = (c["completion_tokens"] / c["requests"]) * c.get("requests_total", c["requests"]) / seeds_measured
        prompt_per_seed = (c["prompt_tokens"] / c["requests"]) * c.get("requests_total", c["requests"]) / seeds_measured
        measured_gpu_rate = (
            c["output_tokens_per_s"] / c["gpus_per_engine"]
            if c.get("gpus_per_engine") and c.get("output_tokens_per_s")
            else None
        )
        rate = measured_gpu_rate or gpu_tokens_per_s
        source = (
            "measured on this run's GPUs"
            if measured_gpu_rate
            else "given (--gpu-tokens-per-s)"
            if gpu_tokens_per_s
            else None
        )
        row: dict[str, Any] = {
            "completion_tokens_per_seed": round(per_seed, 1),
            "prompt_tokens_per_seed": round(prompt_per_seed, 1),
            "output_tokens": round(per_seed * target_seeds),
            "measured_tokens_per_s_per_engine": c.get("output_tokens_per_s"),
            "gpu_tokens_per_s": rate,
            "rate_source": source,
        }
        if rate:
            row["gpu_hours_per_1B_output_tokens"] = round(1e9 / rate / 3600, 1)
            row["gpu_hours_per_1M_seeds"] = round(per_seed * 1e6 / rate / 3600, 1)
            row["gpu_hours"] = round(per_seed * target_seeds / rate / 3600, 1)
            row["arithmetic"] = (
                f"{per_seed:.1f} tokens/seed x {target_seeds:,.0f} seeds / {rate:,.0f} tokens/s/GPU "
                f"/ 3600 = {row['gpu_hours']:,.1f} GPU-hours"
            )
        else:
            row["arithmetic"] = (
                f"{per_seed:.1f} tokens/seed x {target_seeds:,.0f} seeds = {row['output_tokens']:,} "
                "output tokens; GPU-hours need a GPU rate (a GPU run, or --gpu-tokens-per-s)"
            )
        rows[stage] = row
    total = (
        sum(r.get("gpu_hours", 0.0) for r in rows.values()) if all("gpu_hours" in r for r in rows.values()) else None
    )
    return {
        "seeds_measured": seeds_measured,
        "target_seeds": target_seeds,
        "stages": rows,
        "total_output_tokens": sum(r["output_tokens"] for r in rows.values()),
        "total_gpu_hours": round(total, 1) if total is not None else None,
    }


def format_projection(p: dict[str, Any]) -> str:
    basis = p.get("basis") or f"measured on {p['seeds_measured']:,} seeds"
    lines = [f"{basis}; projected to {p['target_seeds']:,.0f} seeds", ""]
    head = f"{'stage':<9} {'tok/seed':>9} {'output tokens':>15} {'tok/s/GPU':>10} {'GPU-h/1M seeds':>15} {'GPU-h/1B tok':>13} {'GPU-hours':>11}"
    lines += [head, "-" * len(head)]
    for stage, r in p["stages"].items():

        def num(key, fmt="{:,.1f}", r=r):
            return fmt.format(r[key]) if r.get(key) is not None else "-"

        lines.append(
            f"{stage:<9} {r['completion_tokens_per_seed']:>9,.1f} {r['output_tokens']:>15,} "
            f"{num('gpu_tokens_per_s', '{:,.0f}'):>10} {num('gpu_hours_per_1M_seeds'):>15} "
            f"{num('gpu_hours_per_1B_output_tokens'):>13} {num('gpu_hours'):>11}"
        )
    total = p["total_gpu_hours"]
    lines.append(
        f"{'total':<9} {'':>9} {p['total_output_tokens']:>15,} {'':>10} {'':>15} {'':>13} "
        f"{(f'{total:,.1f}' if total is not None else '-'):>11}"
    )
    lines.append("")
    for stage, r in p["stages"].items():
        lines.append(f"{stage}: {r['arithmetic']}" + (f" (rate {r['rate_source']})" if r.get("rate_source") else ""))
    return "\n".join(lines)
