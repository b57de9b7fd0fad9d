"""`taskseed run` in this process: its step loop over the catalog and seeds steps on the demo
mirror the project writes itself (no model, no Ray: the default job's `run.executor: inline`).

The whole default job (generation with the model included) runs as `taskseed` commands in
tests/test_default_job.py; this is the loop and the steps that need neither."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from nemo_taskseed.config import load_config
from nemo_taskseed.demo import DEMO_FILES, DEMO_TASKS
from nemo_taskseed.errors import UserError
from nemo_taskseed.run import run_pipeline
from nemo_taskseed.utils.jsonl import read_jsonl


def _rows(path):
    return [row for _, row in read_jsonl(path)]


def test_catalog_and_seeds_steps_on_the_demo_mirror(tmp_path):
    workdir = tmp_path / "run"
    cfg = load_config("default", overrides=[f"run.workdir={workdir}", "run.steps=[catalog,seeds]"])
    console = Console(record=True, width=160)
    summaries = run_pipeline(cfg, console=console)

    # The demo mirror: every packaged file at its <dataset_path>/<config>/<split>.jsonl path, and
    # decontamination pointed at it (it holds the demo benchmarks' scored splits).
    mirror = workdir / "demo_mirror"
    assert all((mirror / target).is_file() for target in DEMO_FILES.values())
    assert cfg.seeds.mirror == str(mirror) and cfg.filter.decontam.mirror == str(mirror)
    train = {r["id"]: r for r in _rows(mirror / "allenai/ai2_arc/ARC-Easy/train.jsonl")}
    test = {r["id"]: r for r in _rows(mirror / "allenai/ai2_arc/ARC-Easy/test.jsonl")}
    assert train["Demo_ARC_0"]["question"] == test["Demo_ARC_test_0"]["question"]  # the planted leak

    # catalog step: the eligible and excluded subtasks, each with its reason.
    eligible = _rows(workdir / "catalog" / "catalog.jsonl")
    excluded = _rows(workdir / "catalog" / "excluded.jsonl")
    assert len(eligible) == summaries["catalog"]["eligible_subtasks"] >= 5000
    assert {r["task"] for r in eligible} >= set(DEMO_TASKS)
    assert all(r["reason"] for r in excluded)

    # seeds step: two seeds per demo subtask (configs/default.yaml), normalized.
    assert summaries["seeds"]["kept"] == 2 * len(DEMO_TASKS) and summaries["seeds"]["rejected"] == 0
    seeds = {task: _rows(workdir / "seeds" / f"seeds.{task}.jsonl") for task in DEMO_TASKS}
    assert all(len(rows) == 2 for rows in seeds.values())
    assert all(r["question"] and r["answer_text"] for rows in seeds.values() for r in rows)

    # One summary for the run: every step's counts and time, and the table on the terminal.
    summary = json.loads((workdir / "run_summary.json").read_text())
    assert list(summary["steps"]) == ["catalog", "seeds"] and summary["config"]["run"]["steps"] == ["catalog", "seeds"]
    text = console.export_text()
    assert "seeds done in" in text and "kept 10" in text and "subtasks in" in text and "families eligible" in text
    assert f"outputs under {workdir}" in text


def test_unknown_steps_and_missing_inputs_are_user_errors(tmp_path):
    cfg = load_config(overrides=[f"run.workdir={tmp_path}", "run.steps=[catalog,generat]"])
    with pytest.raises(UserError, match=r"unknown step\(s\) \['generat'\]; known: \['catalog', 'seeds'"):
        run_pipeline(cfg, console=Console(quiet=True))
    cfg = load_config(overrides=[f"run.workdir={tmp_path}", "run.steps=[tokenize]"])
    with pytest.raises(UserError, match=r"step 'tokenize' reads .*generate, which does not exist: run step 'generate'"):
        run_pipeline(cfg, console=Console(quiet=True))
