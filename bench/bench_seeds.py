"""Normalization throughput: our Curator pipeline vs the same work done directly, in one run.

    .venv/bin/python bench/bench_seeds.py [--records 10000]

Rows: real fixture rows from ../shared/fixtures/hf (arc_easy, commonsense_qa, openbookqa, gsm8k,
mbpp), repeated with a numbered suffix up to --records, written to a temporary mirror (never into
the repo). Baseline: `datasets.load_dataset("json")` + lm-eval's own ConfigurableTask templates
per doc + one JSONL write, single process, no pipeline. Ours: `collect_seeds` on RayDataExecutor,
timed twice: whole command (with Ray start-up) and pipeline only (Ray already up); and the same
Pipeline on the in-process executor, which separates our stages' cost from Ray's fixed cost.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures" / "hf"
SOURCES = {
    "arc_easy": "allenai/ai2_arc/ARC-Easy/train.jsonl",
    "commonsense_qa": "tau/commonsense_qa/default/train.jsonl",
    "openbookqa": "allenai/openbookqa/main/train.jsonl",
    "gsm8k": "openai/gsm8k/main/train.jsonl",
    "mbpp": "google-research-datasets/mbpp/full/train.jsonl",
}
QUESTION_KEY = {"openbookqa": "question_stem", "mbpp": "text"}


def build_mirror(root: Path, total: int) -> dict[str, Path]:
    per_task = total // len(SOURCES)
    paths = {}
    for task, rel in SOURCES.items():
        rows = [json.loads(line) for line in (FIXTURES / rel).read_text().splitlines()]
        key = QUESTION_KEY.get(task, "question")
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("w") as f:
            for i in range(per_task):
                row = dict(rows[i % len(rows)])
                row[key] = f"{row[key]} (variant {i})"
                f.write(json.dumps(row) + "\n")
        paths[task] = dest
    return paths


def baseline(catalog_rows: list[dict], files: dict[str, Path], out: Path) -> int:
    """The same normalization without the pipeline: datasets + lm-eval templates + a JSONL write."""
    import datasets
    from lm_eval.api.task import ConfigurableTask

    from nemo_taskseed.compat import cache_lm_eval_templates
    from nemo_taskseed.seeds.normalize import serve_rows_offline
    from nemo_taskseed.utils.lm_eval_yaml import template_config

    cache_lm_eval_templates()  # the upstream fix our stages use, so both sides render equally fast
    n = 0
    with out.open("w") as f:
        for cat in catalog_rows:
            ds = datasets.load_dataset("json", data_files=str(files[cat["task"]]), split="train")
            cfg = template_config(cat["yaml_path"])
            split = cat["split"]
            serve_rows_offline(cfg, split, datasets.DatasetDict({split: ds}))
            task = ConfigurableTask(config=cfg)
            for doc in task.test_docs():
                rec = {"task": cat["task"], "prompt": task.doc_to_text(doc), "target": task.doc_to_target(doc)}
                if cat["format"] == "multiple_choice":
                    rec["options"] = task.doc_to_choice(doc)
                rec["raw"] = doc
                f.write(json.dumps(rec, default=str) + "\n")
                n += 1
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    args = parser.parse_args()
    import logging

    from _results import publish_output  # bench/_results.py (bench/ is on sys.path when run as a script)

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    import ray

    from nemo_taskseed.catalog import load_catalog_rows
    from nemo_taskseed.config import load_config
    from nemo_taskseed.seeds import collect_seeds

    cfg = load_config(overrides=["seeds.max_per_subtask=null", "seeds.resume=false"])
    rows = load_catalog_rows(cfg.catalog, list(SOURCES))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = build_mirror(tmp / "mirror", args.records)

        t = time.perf_counter()
        n_base = baseline(rows, files, tmp / "baseline.jsonl")
        t_base = time.perf_counter() - t

        t = time.perf_counter()
        inline = collect_seeds(rows, cfg.seeds, tmp / "inline", mirror=str(tmp / "mirror"), executor_name="inline")
        t_inline = time.perf_counter() - t  # the same stages and Pipeline, no Ray

        t = time.perf_counter()
        summary = collect_seeds(rows, cfg.seeds, tmp / "cold", mirror=str(tmp / "mirror"))
        t_cold = time.perf_counter() - t  # includes starting a local Ray cluster

        t = time.perf_counter()
        warm = collect_seeds(rows, cfg.seeds, tmp / "warm", mirror=str(tmp / "mirror"))
        t_warm = time.perf_counter() - t  # Ray already running
        ray.shutdown()

    assert summary["kept"] == warm["kept"] == inline["kept"] == n_base, (
        summary["kept"],
        warm["kept"],
        inline["kept"],
        n_base,
    )
    with publish_output("seeds"):
        print(f"records: {n_base} over {len(rows)} subtasks")
        print(
            f"baseline (datasets + lm-eval templates, no pipeline): {t_base:6.2f} s  {n_base / t_base:8.0f} records/s"
        )
        print(
            f"pipeline, in-process executor (no Ray):              {t_inline:6.2f} s  {n_base / t_inline:8.0f} records/s  ratio {t_base / t_inline:.2f}  overhead {t_inline / t_base - 1:+.0%}"
        )
        print(
            f"pipeline, cold (Ray start-up included):              {t_cold:6.2f} s  {n_base / t_cold:8.0f} records/s  ratio {t_base / t_cold:.2f}  overhead {t_cold / t_base - 1:+.0%}"
        )
        print(
            f"pipeline, warm (Ray already up):                     {t_warm:6.2f} s  {n_base / t_warm:8.0f} records/s  ratio {t_base / t_warm:.2f}  overhead {t_warm / t_base - 1:+.0%}"
        )
        print("goal: overhead <= +25% at 10k records (warm figure; the cold one adds Ray's fixed start-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
