"""The real Curator pipeline on a real Ray executor, through the CLI, with resume."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.subprocess]

TASKS = "arc_easy,commonsense_qa,openbookqa,gsm8k,mbpp,mmlu_anatomy"


def taskseed(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nemo_taskseed", *args], capture_output=True, text=True)


def test_seeds_cli_on_ray_then_resume(fixtures_hf, tmp_path):
    out = tmp_path / "seeds"
    proc = taskseed("seeds", "--mirror", str(fixtures_hf), "--tasks", TASKS, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kept"] == 200 * 5 + 5 and summary["rejected"] == 0
    assert sorted(p.name for p in out.glob("seeds*.jsonl")) == sorted(f"seeds.{t}.jsonl" for t in TASKS.split(","))
    assert (out / "rejected.jsonl").read_text() == ""
    # Curator's RayDataExecutor ran it; its INFO lines go to the log file, not the terminal.
    assert "Pipeline completed" in (out / "taskseed.log").read_text() and "Pipeline completed" not in proc.stderr
    before = {p.name: p.read_bytes() for p in out.glob("seeds*.jsonl")}

    again = taskseed("seeds", "--mirror", str(fixtures_hf), "--tasks", TASKS, "--out", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads((out / "summary.json").read_text())
    assert resumed["resumed_subtasks"] == 6 and resumed["kept"] == summary["kept"]
    assert {p.name: p.read_bytes() for p in out.glob("seeds*.jsonl")} == before


def test_unknown_task_is_a_clear_error(fixtures_hf, tmp_path):
    proc = taskseed("seeds", "--mirror", str(fixtures_hf), "--tasks", "arc_easy,comonsense_qa", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "unknown task(s): 'comonsense_qa' (did you mean: commonsense_qa" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_mirror_seeds_on_ray(tmp_path):
    """Every demo row normalizes (the default job caps at 2 per subtask; here all are taken)."""
    workdir = tmp_path / "run"
    proc = taskseed(
        "run",
        "default",
        f"run.workdir={workdir}",
        "run.steps=[catalog,seeds]",
        "seeds.max_per_subtask=null",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((workdir / "run_summary.json").read_text())
    assert summary["steps"]["catalog"]["eligible_subtasks"] >= 480
    assert summary["steps"]["seeds"]["kept"] == 30 and summary["steps"]["seeds"]["rejected"] == 0
    assert (workdir / "demo_mirror/openai/gsm8k/main/train.jsonl").is_file()
    assert len((workdir / "seeds/seeds.mbpp.jsonl").read_text().splitlines()) == 4
