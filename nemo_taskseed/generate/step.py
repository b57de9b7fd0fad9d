"""`taskseed generate` / the `generate` step of `taskseed run`: seeds in, generated records out.

    in_dir/seeds*.jsonl  ->  out_dir/generated.jsonl   one record per item and variant (taskseed.generated/1)
                             out_dir/rejected.jsonl    every dropped candidate, with stage and reason
                             out_dir/summary.json      counts: kept, dropped per reason, requests, tokens
                             out_dir/requests.sqlite   the request cache (what makes resume cheap)

Requests are committed to the cache chunk by chunk while the run goes; the three output files are
derived from the seeds and the cache alone and written atomically at the end (temp file +
rename), so a run killed at any point and restarted writes exactly what an uninterrupted run
writes, and never re-sends a finished request.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nemo_taskseed.config import to_container
from nemo_taskseed.errors import UserError
from nemo_taskseed.generate.backends import Backend, build_backend
from nemo_taskseed.generate.stages import (
    AnswerEnrichmentStage, SimilarQuestionStage, count_reasons, from_batch, log_summary, seeds_batch,
)
from nemo_taskseed.schema.generated import validate_generated
from nemo_taskseed.schema.records import validate_seed
from nemo_taskseed.utils.jsonl import read_jsonl, write_json, write_jsonl

CACHE_FILE = "requests.sqlite"


def read_seeds(in_dir: Path) -> tuple[list[dict], list[dict]]:
    """(valid seeds in file/line order, rejected rows for invalid ones)."""
    files = sorted(Path(in_dir).glob("seeds*.jsonl"))
    if not files:
        raise UserError(f"no seeds*.jsonl in {in_dir} (run `taskseed seeds` first)")
    seeds, rejected, seen = [], [], set()
    for f in files:
        for line_no, seed in read_jsonl(f):
            errors = validate_seed(seed)
            if errors:
                rejected.append({"stage": "seeds", "reason": "invalid_seed", "detail": "; ".join(errors)[:300],
                                 "seed_id": seed.get("id"), "file": f.name, "line": line_no})
                continue
            if seed["id"] in seen:
                continue  # the same seed twice generates once
            seen.add(seed["id"])
            seeds.append(seed)
    return seeds, rejected


def _run_inline(config: dict, seeds: list[dict], cache_path: str, backend: Backend | None):
    """Both stages in this process, sharing one backend (one engine for both passes)."""
    own_backend = backend is None
    if backend is None:
        backend = build_backend(config)
    from nemo_curator.pipeline import Pipeline

    from nemo_taskseed.pipeline.executors import make_executor

    pipeline = Pipeline(
        name="taskseed_generate",
        stages=[SimilarQuestionStage(cfg=config, cache_path=cache_path, backend=backend),
                AnswerEnrichmentStage(cfg=config, cache_path=cache_path, backend=backend)],
    )
    try:
        return pipeline.run(make_executor("inline"), initial_tasks=[seeds_batch(seeds)]) or []
    finally:
        if own_backend:
            backend.close()


def _run_pipeline(config: dict, seeds: list[dict], cache_path: str, executor: str):
    """The same stages as a Curator `Pipeline` on a Curator executor (ray_data, xenna).

    Each stage builds its own backend in its worker: with in-process vLLM that is two engines
    (give each a share of GPU memory); a `vllm serve`/NIM endpoint (`backend.kind=openai`) avoids it.
    """
    from nemo_curator.pipeline import Pipeline

    from nemo_taskseed.pipeline.executors import make_executor

    pipeline = Pipeline(
        name="taskseed_generate",
        stages=[SimilarQuestionStage(cfg=config, cache_path=cache_path),
                AnswerEnrichmentStage(cfg=config, cache_path=cache_path)],
    )
    return pipeline.run(make_executor(executor), initial_tasks=[seeds_batch(seeds)]) or []


def run_step(cfg, in_dir: Path, out_dir: Path, *, backend: Backend | None = None) -> dict:
    """Generate and enrich for every seed in `in_dir`; returns the summary (also out_dir/summary.json).

    `backend` lets callers (tests, notebooks) reuse a running engine; by default one is built from
    `cfg.generate.backend` and shared by both stages.
    """
    started = time.time()
    config = to_container(cfg) or {}
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds, rejected = read_seeds(in_dir)
    if not seeds:
        raise UserError(f"{in_dir}: no valid seeds ({len(rejected)} invalid)")

    cache_path = str(out_dir / CACHE_FILE)
    executor = config.get("generate", {}).get("executor", "inline")
    if executor == "inline" or backend is not None:
        out_batches = _run_inline(config, seeds, cache_path, backend)
    else:
        out_batches = _run_pipeline(config, seeds, cache_path, executor)

    generated, stage_rejected = [], []
    requests = {"generate": {"total": 0, "cached": 0, "sent": 0}, "enrich": {"total": 0, "cached": 0, "sent": 0}}
    usage: dict[str, int] = {}
    for out_batch in out_batches:
        for kind, rec in from_batch(out_batch):
            (generated if kind == "generated" else stage_rejected).append(rec)
        for stage in requests:
            for k, v in out_batch._metadata.get(f"requests.{stage}", {}).items():
                requests[stage][k] += v
        # Usage counters are cumulative per backend: the enrichment stage's covers both passes
        # when they share one backend, else add both.
        for k, v in out_batch._metadata.get("usage.enrich", {}).items():
            usage[k] = usage.get(k, 0) + v
        if executor != "inline" and backend is None:
            for k, v in out_batch._metadata.get("usage.generate", {}).items():
                usage[k] = usage.get(k, 0) + v
    rejected.extend(stage_rejected)
    invalid = [(r["id"], validate_generated(r)) for r in generated]
    invalid = [(i, e) for i, e in invalid if e]
    if invalid:  # a bug in this package, not in the model's output
        raise RuntimeError(f"generated records fail their schema: {invalid[:3]}")

    write_jsonl(out_dir / "generated.jsonl", generated, sort_keys=True)
    write_jsonl(out_dir / "rejected.jsonl", rejected, sort_keys=True)
    backend_cfg = config.get("generate", {}).get("backend", {})
    items = {r["lineage"]["item_id"] for r in generated}
    # Correct-option letters over kept multiple-choice items (once per item, whatever its variants).
    positions: dict[str, int] = {}
    counted: set[str] = set()
    for r in generated:
        if r["format"] == "multiple_choice" and r["lineage"]["item_id"] not in counted:
            counted.add(r["lineage"]["item_id"])
            key = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[r["answer_index"]]
            positions[key] = positions.get(key, 0) + 1
    per_variant: dict[str, int] = {}
    for r in generated:
        per_variant[r["variant"]] = per_variant.get(r["variant"], 0) + 1
    summary = {
        "seeds": len(seeds),
        "candidates": len(seeds) * int(config.get("generate", {}).get("sampling", {}).get("n", 1)),
        "items_kept": len(items),
        "records_kept": len(generated),
        "records_per_variant": per_variant,
        "dropped": count_reasons(rejected),
        "answer_positions": dict(sorted(positions.items())),
        "requests": requests,
        "backend": {"kind": backend_cfg.get("kind", "vllm"), "executor": executor if backend is None else "inline",
                    "usage": usage},
        "seconds": round(time.time() - started, 1),
    }
    # `seconds` and `usage` describe this invocation; everything else is a function of seeds + cache.
    write_json(out_dir / "summary.json", summary, sort_keys=True)
    log_summary(summary)
    return summary
