"""Eval hooks for real: lm-eval (hf backend, CPU) scores the 135M model on fixture-backed task configs.

A fake checkpoint folder laid out like Megatron-Bridge's (`iter_NNNNNNN/hf/`, the HF export our
recipe turns on) triggers the watcher; the watcher runs lm-eval on it and on the baseline and
appends the per-run results JSONL; `taskseed report` then builds the delta table and the plot.
Benchmarks here are loglikelihood ones (ARC-Easy, PIQA): generation (GSM8K) with the hf backend
took minutes per question on these shared CPUs, so it is configured but not run here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from nemo_taskseed.cli import main
from nemo_taskseed.config import ConfigError, load_config
from nemo_taskseed.evaluate.bridge_callback import request_eval
from nemo_taskseed.evaluate.runner import read_rows
from nemo_taskseed.evaluate.tasks import local_task_config, selected_benchmarks
from nemo_taskseed.evaluate.watcher import find_checkpoints, pending_checkpoints

LIMIT = 4


def eval_overrides(fixtures_hf: Path) -> list[str]:
    return [
        "eval.backend=hf",
        "eval.device=cpu",
        "eval.dtype=float32",
        "eval.batch_size=8",
        "eval.run=[arc_easy,piqa]",
        f"eval.limit={LIMIT}",
        "eval.run_name=cpu-test",
        f"eval.local_data.arc_easy.test={fixtures_hf}/allenai/ai2_arc/ARC-Easy/test.jsonl",
        f"eval.local_data.piqa.validation={fixtures_hf}/baber/piqa/default/validation.jsonl",
    ]


def fake_checkpoint(root: Path, step: int, model_dir: Path, *, with_hf_export: bool = True) -> Path:
    """`iter_NNNNNNN/` as Bridge writes it; the hf/ export links to the real 135M model's files."""
    ckpt = root / f"iter_{step:07d}"
    (ckpt / "hf").mkdir(parents=True) if with_hf_export else ckpt.mkdir(parents=True)
    (ckpt / "common.pt").write_bytes(b"")  # stands in for the Megatron distributed checkpoint
    if with_hf_export:
        for item in model_dir.iterdir():
            (ckpt / "hf" / item.name).symlink_to(item.resolve())
    return ckpt


@pytest.fixture(scope="module")
def watched_run(tmp_path_factory, model_dir, fixtures_hf):
    """One real watcher pass: baseline + a ready checkpoint; an incomplete one is left alone."""
    work = tmp_path_factory.mktemp("eval")
    root = work / "checkpoints"
    fake_checkpoint(root, 100, model_dir)
    fake_checkpoint(root, 150, model_dir, with_hf_export=False)  # still saving: no hf/ export yet
    results = work / "results.jsonl"
    argv = [
        "evaluate",
        "watch",
        "--checkpoints",
        str(root),
        "--baseline",
        str(model_dir),
        "--results",
        str(results),
        "--once",
        *eval_overrides(fixtures_hf),
    ]
    assert main(argv) == 0
    return {"root": root, "results": results, "work": work, "argv": argv}


@pytest.mark.model
def test_watcher_scores_baseline_and_new_checkpoint_with_lm_eval(watched_run, model_dir):
    rows = read_rows(watched_run["results"])
    assert {(r["label"], r["step"], r["benchmark"]) for r in rows} == {
        ("baseline", 0, "arc_easy"),
        ("baseline", 0, "piqa"),
        ("step_100", 100, "arc_easy"),
        ("step_100", 100, "piqa"),
    }
    for row in rows:
        assert row["group"] == "commonsense" and row["metric"] == "acc_norm,none"
        assert row["n_samples"] == LIMIT and row["local_data"] is True and row["backend"] == "hf"
        assert 0.0 <= row["value"] <= 1.0 and row["run"] == "cpu-test"
    by_step = {(r["step"], r["benchmark"]): r["value"] for r in rows}
    # The fake checkpoint holds the baseline's weights: greedy loglikelihood scoring must agree.
    assert by_step[(100, "arc_easy")] == by_step[(0, "arc_easy")]
    assert by_step[(100, "piqa")] == by_step[(0, "piqa")]
    assert {r["checkpoint"] for r in rows if r["step"] == 100} == {str(watched_run["root"] / "iter_0000100")}


@pytest.mark.model
def test_watcher_is_restartable_and_skips_scored_checkpoints(watched_run):
    before = read_rows(watched_run["results"])
    assert pending_checkpoints(watched_run["root"], watched_run["results"]) == []
    assert main(watched_run["argv"]) == 0  # a restarted watcher: nothing new to score
    assert read_rows(watched_run["results"]) == before


@pytest.mark.model
def test_report_from_real_results(watched_run, capsys):
    out = watched_run["work"] / "report"
    assert main(["report", "--results", str(watched_run["results"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "## Step 100" in printed
    deltas = (out / "deltas.csv").read_text().splitlines()
    assert deltas[0] == "step,kind,group,name,baseline,score,delta"
    rows = [line.split(",") for line in deltas[1:]]
    assert {(r[1], r[3]) for r in rows} == {("benchmark", "arc_easy"), ("benchmark", "piqa"), ("group", "commonsense")}
    assert all(float(r[6]) == 0.0 for r in rows)  # same weights, same scores
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_hook_queues_a_checkpoint_for_the_watcher(tmp_path, model_dir):
    root = tmp_path / "checkpoints"
    fake_checkpoint(root, 200, model_dir)
    marker = tmp_path / "submitted.txt"
    request = request_eval(root, 200, submit_command=f"echo {{checkpoint}} {{step}} > {marker}")
    assert json.loads(request.read_text()) == {"checkpoint": str(root / "iter_0000200"), "step": 200}
    assert not list(request.parent.glob("*.tmp"))
    found = find_checkpoints(root)
    assert [(c.step, c.model_dir) for c in found] == [(200, root / "iter_0000200" / "hf")]
    # The submit command runs detached; wait for it (bounded) rather than assume timing.
    for _ in range(100):
        if marker.is_file() and marker.read_text().strip():
            break
        time.sleep(0.1)
    assert marker.read_text().split() == [str(root / "iter_0000200"), "200"]


def test_nemo2_layout_is_found_too(tmp_path, model_dir):
    hf = (
        tmp_path
        / "run"
        / "taskseed_llama32_1b"
        / "checkpoints"
        / "model_name=0--val_loss=2.10-step=499-consumed_samples=1000.0"
        / "hf"
    )
    hf.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (hf / name).symlink_to((model_dir / name).resolve())
    assert [c.step for c in find_checkpoints(tmp_path / "run")] == [499]


def test_local_task_config_keeps_stock_prompt_and_reads_local_files(fixtures_hf):
    cfg = load_config(None, eval_overrides(fixtures_hf))
    arc = {b.name: b for b in selected_benchmarks(cfg.eval)}["arc_easy"]
    task = local_task_config(arc)
    assert task["task"] == "arc_easy" and task["dataset_path"] == "json" and task["dataset_name"] is None
    test_file = fixtures_hf / "allenai/ai2_arc/ARC-Easy/test.jsonl"
    assert {k: str(Path(v).resolve()) for k, v in task["dataset_kwargs"]["data_files"].items()} == {
        "test": str(test_file.resolve())
    }
    assert task["doc_to_text"] == "Question: {{question}}\nAnswer:"  # stock lm-eval prompt, untouched
    assert task["validation_split"] is None and task["training_split"] is None  # no local files for them


def test_few_shot_without_local_few_shot_split_is_refused(fixtures_hf):
    cfg = load_config(
        None, ["eval.run=[gsm8k]", f"eval.local_data.gsm8k.test={fixtures_hf}/openai/gsm8k/main/test.jsonl"]
    )
    gsm8k = selected_benchmarks(cfg.eval)[0]
    assert (gsm8k.group, gsm8k.num_fewshot) == ("math", 8)
    with pytest.raises(ConfigError, match="8-shot needs split 'train'"):
        local_task_config(gsm8k)


def test_default_benchmark_set_covers_the_four_groups():
    cfg = load_config(None, [])
    groups = {}
    for bench in selected_benchmarks(cfg.eval):
        groups.setdefault(bench.group, []).append(bench.name)
    assert groups == {
        "knowledge": ["gpqa_diamond_cot", "mmlu_pro", "agieval_en"],
        "commonsense": ["arc_challenge", "arc_easy", "hellaswag", "piqa", "winogrande"],
        "math": ["gsm8k", "math"],
        "code": ["humaneval", "mbpp"],
    }
    with pytest.raises(ConfigError, match="not in eval.benchmarks"):
        selected_benchmarks(load_config(None, ["eval.run=[mmlu]"]).eval)
