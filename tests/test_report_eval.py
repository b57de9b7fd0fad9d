"""`taskseed report` arithmetic on hand-written result rows (the real lm-eval path is in test_eval_hooks)."""

from __future__ import annotations

import json

import pytest

from nemo_taskseed.cli import main
from nemo_taskseed.errors import UserError
from nemo_taskseed.evaluate.report import deltas, score_table


def row(step, bench, group, value, *, label=None, evaluated_at="2026-01-01T00:00:00+00:00"):
    return {
        "run": "r1",
        "label": label or f"step_{step}",
        "step": step,
        "checkpoint": f"/c/iter_{step}",
        "benchmark": bench,
        "task": bench,
        "group": group,
        "metric": "acc,none",
        "value": value,
        "num_fewshot": 0,
        "limit": None,
        "local_data": False,
        "evaluated_at": evaluated_at,
    }


ROWS = [
    row(0, "mmlu_pro", "knowledge", 0.30),
    row(0, "arc_easy", "commonsense", 0.60),
    row(0, "piqa", "commonsense", 0.70),
    row(0, "gsm8k", "math", 0.10),
    row(500, "mmlu_pro", "knowledge", 0.33),
    row(500, "arc_easy", "commonsense", 0.62),
    row(500, "piqa", "commonsense", 0.69),
    row(500, "gsm8k", "math", 0.16),
    row(1000, "mmlu_pro", "knowledge", 0.35),
    row(1000, "arc_easy", "commonsense", 0.64),
    # piqa and gsm8k not scored yet at 1000: group means use what is there, nothing is invented.
]


def test_group_score_is_the_mean_of_its_benchmarks():
    steps, table, group_of = score_table(ROWS)
    assert steps == [0, 500, 1000]
    assert table[0]["group:commonsense"] == pytest.approx(65.0)
    assert table[1000]["group:commonsense"] == pytest.approx(64.0)  # only arc_easy scored
    assert "group:math" not in table[1000] and group_of["gsm8k"] == "math"


def test_deltas_against_the_baseline_per_benchmark_and_group():
    by_key = {(d["step"], d["name"]): d for d in deltas(ROWS)}
    assert by_key[(500, "mmlu_pro")]["delta"] == pytest.approx(3.0)
    assert by_key[(500, "piqa")]["delta"] == pytest.approx(-1.0)
    assert by_key[(500, "commonsense")]["delta"] == pytest.approx(0.5)  # (62+69)/2 - 65
    assert by_key[(500, "math")]["delta"] == pytest.approx(6.0)
    assert (1000, "gsm8k") not in by_key
    assert by_key[(1000, "knowledge")]["kind"] == "group"
    against_500 = {(d["step"], d["name"]): d for d in deltas(ROWS, baseline_step=500)}
    assert against_500[(1000, "arc_easy")]["delta"] == pytest.approx(2.0) and (0, "arc_easy") in against_500
    with pytest.raises(UserError, match="baseline step 7 is not in the results"):
        deltas(ROWS, baseline_step=7)


def test_a_rescored_checkpoint_replaces_its_older_score():
    rows = ROWS + [row(500, "piqa", "commonsense", 0.75, evaluated_at="2026-01-02T00:00:00+00:00")]
    by_key = {(d["step"], d["name"]): d for d in deltas(rows)}
    assert by_key[(500, "piqa")]["delta"] == pytest.approx(5.0)


def test_report_cli_writes_table_plot_and_data_report(tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "seq_length": 4096,
                "total_tokens": 1_000_000,
                "data_paths": [[1.0, "/d/qa"]],
                "entries": [{"family": "arc", "tokens": 600_000}, {"family": "gsm8k", "tokens": 400_000}],
            }
        )
    )
    stats = tmp_path / "filter_stats.json"
    stats.write_text(json.dumps({"kept": 90, "rejected": {"contaminated": 4, "question_too_short": 6}}))
    out = tmp_path / "report"
    assert main(["report", "--results", str(results), "--out", str(out), "--data", str(plan), str(stats)]) == 0
    md = (out / "report.md").read_text()
    assert "## Step 500" in md and "## Step 1000" in md
    assert "| group | commonsense | commonsense | 65.00 | 65.50 | +0.50 |" in md
    assert "| arc | 600000 |" in md  # plan entries (families, tokens)
    assert '"contaminated": 4' in md  # rejection reasons / contamination, as the pipeline wrote them
    assert (out / "scores.png").stat().st_size > 10_000
    assert len((out / "deltas.csv").read_text().splitlines()) == 1 + len(deltas(ROWS))
    assert "report.md" in capsys.readouterr().out


def test_report_without_results_is_a_user_error(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "no results" in capsys.readouterr().err
