"""`taskseed ablate`: the arms and their plans, the cost, the report's statistics, the GPU launch of
every arm (dry runs against the Bridge and NeMo 2 recipes), and the whole loop at toy scale on CPU:
plan -> megatron-core blended data -> a tiny model trained per arm -> checkpoints scored by the eval
watcher with lm-eval -> the report."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nemo_taskseed.ablate.arms import Arm, arm_section, define_arms, gpu_hours, prefix_value
from nemo_taskseed.ablate.report import build_report, compare
from nemo_taskseed.blend import PlanError, PlanSettings, plan_blend
from nemo_taskseed.blend.sources import ExistingEntry, SyntheticPrefix
from nemo_taskseed.config import ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent
LAUNCH_PYTHON = REPO / ".venv-launch" / "bin" / "python"
NEMO2_PYTHON = REPO / ".venv-nemo2" / "bin" / "python"


def prefix(name: str, kind: str, fmt: str, tokens: int = 10_000) -> SyntheticPrefix:
    return SyntheticPrefix(
        name=name,
        prefix=f"/data/syn/{name}",
        tokens=tokens,
        documents=50,
        family=name,
        variant=None,
        kind=kind,
        group=kind,
        format_tokens={fmt: tokens},
    )


PREFIXES = [
    prefix("arc", "knowledge", "multiple_choice"),
    prefix("mmlu", "knowledge", "multiple_choice", 30_000),
    prefix("gsm8k", "reasoning", "generative"),
    prefix("csqa", "reasoning", "multiple_choice"),
]
ARMS = {
    "baseline": True,
    "all_synthetic": True,
    "leave_one_out": ["kind", "format"],
    "share_sweep": [0.01, 0.025],
    "microanneal": {"total_tokens": 500_000, "synthetic_share": 0.5},
}


def test_the_arms_one_config_asks_for():
    arms = define_arms(ARMS, PREFIXES)
    assert [a.name for a in arms] == [
        "baseline",
        "all_synthetic",
        "without_kind_knowledge",
        "without_kind_reasoning",
        "without_format_generative",
        "without_format_multiple_choice",
        "share_1pct",
        "share_2p5pct",
        "microanneal",
    ]
    assert arms[0].synthetic_share == 0.0 and arms[-1] == Arm(
        "microanneal", "microanneal: 500,000 tokens at 50% synthetic", 0.5, total_tokens=500_000
    )
    families = define_arms({"leave_one_out": ["family"]}, PREFIXES)
    assert [a.leave_out for a in families] == [("family", f) for f in ("arc", "csqa", "gsm8k", "mmlu")]
    with pytest.raises(ConfigError, match="unknown key 'task'; known: kind, format, family"):
        define_arms({"leave_one_out": ["task"]}, PREFIXES)
    with pytest.raises(ConfigError, match="no arm is enabled"):
        define_arms({"baseline": False}, PREFIXES)
    mixed = prefix("mixed", "knowledge", "multiple_choice")
    mixed.format_tokens = {"multiple_choice": 600, "generative": 400}
    with pytest.raises(PlanError, match="prefix mixed mixes formats .* tokenize.group_by=\\[family,format,variant\\]"):
        prefix_value(mixed, "format")


def _plan(section, select=None) -> dict:
    settings = PlanSettings.from_config(section)
    existing = [ExistingEntry("web", "/data/web", 1.0, None, "test")] if section.synthetic_share < 1 else []
    chosen = [p for p in PREFIXES if select is None or select(p)]
    return plan_blend(chosen, existing, settings, "web" if existing else "none")


def test_leaving_a_group_out_keeps_the_other_groups_tokens():
    """The left-out group's tokens go to the pretraining part; the other groups keep theirs, so the
    arm's delta against all_synthetic is the group's contribution."""
    blend = load_config(
        overrides=[
            "blend.total_tokens=1000000",
            "blend.seq_length=1000",
            "blend.synthetic_share=0.2",
            "blend.max_epochs=null",
            "blend.max_share=null",
            "blend.min_share=0",
            "blend.format_quotas=null",
        ]
    ).blend
    base_section, _ = arm_section(blend, Arm("all_synthetic", ""), None, "web", PREFIXES)
    base = _plan(base_section)
    groups = {g: v["tokens"] for g, v in base["groups"].items() if g in ("knowledge", "reasoning")}
    section, select = arm_section(blend, Arm("x", "", leave_out=("kind", "reasoning")), base, "web", PREFIXES)
    assert section.group_quotas == {} and section.synthetic_share == pytest.approx(groups["knowledge"] / 1_000_000)
    arm = _plan(section, select)
    assert {e["name"] for e in arm["entries"] if e["source"] == "synthetic"} == {"arc", "mmlu"}
    assert arm["synthetic_tokens"] == pytest.approx(groups["knowledge"], abs=1000)  # rounded to whole samples
    baseline = _plan(arm_section(blend, Arm("baseline", "", synthetic_share=0.0), base, "web", PREFIXES)[0])
    assert baseline["synthetic_tokens"] == 0 and [e["name"] for e in baseline["entries"]] == ["web"]
    assert baseline["data_paths"] == [[1.0, "/data/web"]]


def test_leaving_a_kind_out_needs_no_single_format_prefixes():
    """A prefix that mixes formats cannot be left out by format, but leaving out a kind keeps the
    format quotas of every format its remaining prefixes hold (mixed ones included)."""
    mixed = prefix("mixed", "knowledge", "multiple_choice")
    mixed.format_tokens = {"multiple_choice": 6_000, "generative": 4_000}
    prefixes = [mixed, prefix("gsm8k", "reasoning", "generative")]
    blend = load_config(overrides=["blend.synthetic_share=0.2", "blend.max_epochs=null"]).blend
    base = {"synthetic_tokens": 200, "total_tokens": 1000, "entries": [], "formats": {"tokens": {}}}
    section, select = arm_section(blend, Arm("x", "", leave_out=("kind", "reasoning")), base, "web", prefixes)
    assert dict(section.format_quotas) == {"generative": 0.4, "multiple_choice": 0.6}  # the configured pair
    assert [p.name for p in prefixes if select(p)] == ["mixed"]


def test_gpu_hours_are_six_n_d_over_peak_and_mfu():
    cost = {"gpu_peak_tflops": 989.4, "mfu": 0.4}
    # Llama 3.1 8B on 100B tokens: 6 x 8.03e9 x 1e11 = 4.818e21 FLOPs at 395.76 TFLOPS sustained.
    assert gpu_hours(100_000_000_000, 8.03e9, cost) == pytest.approx(4.818e21 / 395.76e12 / 3600)
    assert round(gpu_hours(100_000_000_000, 8.03e9, cost)) == 3382
    assert gpu_hours(10, None, cost) is None


def _rows(arm: str, scores: dict[str, tuple[float, float | None]], step: int = 30) -> list[dict]:
    return [
        {
            "step": step,
            "benchmark": b,
            "group": "knowledge" if b == "mmlu_pro" else "commonsense",
            "value": v,
            "stderr": se,
        }
        for b, (v, se) in scores.items()
    ]


def test_the_report_says_which_differences_exceed_noise(tmp_path):
    base = _rows("baseline", {"arc_easy": (0.50, 0.01), "piqa": (0.70, 0.01), "mmlu_pro": (0.30, None)})
    arms = {
        "baseline": _rows("baseline", {"arc_easy": (0.10, 0.5)}, step=15) + base,  # the last step counts
        "all_synthetic": _rows(
            "all_synthetic", {"arc_easy": (0.56, 0.01), "piqa": (0.71, 0.01), "mmlu_pro": (0.33, 0.02)}
        ),
    }
    rows = {(r["name"], r["kind"]): r for r in compare(arms, "baseline", z=1.96)}
    arc = rows[("arc_easy", "benchmark")]
    assert (arc["baseline"], arc["score"], arc["delta"]) == (50.0, 56.0, 6.0)
    assert arc["delta_stderr"] == pytest.approx(1.41, abs=0.01) and arc["beyond_noise"] is True
    assert rows[("piqa", "benchmark")]["beyond_noise"] is False  # +1.0 with se 1.41
    assert rows[("mmlu_pro", "benchmark")]["beyond_noise"] is None  # no stderr for the baseline: not judged
    group = rows[("commonsense", "group")]
    assert group["delta"] == 3.5 and group["delta_stderr"] == pytest.approx(1.0, abs=0.01)

    for name, arm_rows in arms.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in arm_rows))
    index = {
        "arms": [
            {"name": n, "what": n, "total_tokens": 100, "synthetic_tokens": s, "gpu_hours": None}
            for n, s in (("baseline", 0), ("all_synthetic", 25), ("share_5pct", 5))
        ],
        "notes": ["the pretraining part is a STAND-IN"],
    }
    results = {n: str(tmp_path / f"{n}.jsonl") for n in arms} | {"share_5pct": str(tmp_path / "none.jsonl")}
    paths = build_report(index, results, tmp_path / "report", baseline="baseline", reference={"mmlu_pro": 1.8}, z=1.96)
    md = paths["markdown"].read_text()
    assert "| arm | arc_easy | mmlu_pro | piqa | group commonsense | group knowledge |" in md
    assert "| all_synthetic | +6.0 ± 1.4 * | +3.0 | +1.0 ± 1.4 | +3.5 ± 1.0 * | +3.0 |" in md
    assert "| *paper (reference)* |  | +1.8 |  |  |  |" in md
    assert "> no results yet for: share_5pct" in md and "> the pretraining part is a STAND-IN" in md
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["csv"].read_text().splitlines()[0] == (
        "arm,kind,name,group,score,stderr,baseline,delta,delta_stderr,beyond_noise"
    )


# --- real data: arms planned on tokenized fixture rows, launched on GPUs (dry) and here on CPU ---


@pytest.fixture(scope="module")
def planned(tmp_path_factory, fixtures_hf, model_dir) -> dict:
    """`taskseed ablate plan` on real benchmark training rows tokenized with the 135M tokenizer;
    the pretraining part is the stand-in (this machine has no pretraining corpus)."""
    from test_tokenize import tokenize_fixture_documents

    from nemo_taskseed.cli import main

    root = tmp_path_factory.mktemp("ablate")
    tokenize_fixture_documents(root, fixtures_hf, model_dir, group_by=("family", "format"))
    overrides = [
        f"ablate.manifest={root / 'tok'}",
        "ablate.arms.leave_one_out=[format]",
        "ablate.arms.share_sweep=[0.5]",
        "ablate.arms.microanneal={total_tokens: 7680, synthetic_share: 0.5}",
        "blend.total_tokens=15360",
        "blend.seq_length=128",
        "blend.synthetic_share=0.25",
        "blend.max_epochs=null",
        "blend.plot=false",
    ]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["ablate", "plan", "--out", str(root / "out"), *overrides]) == 0
    return {"root": root, "out": root / "out", "overrides": overrides, "printed": printed.getvalue()}


EXPECTED_ARMS = [
    "baseline",
    "all_synthetic",
    "without_format_generative",
    "without_format_multiple_choice",
    "share_50pct",
    "microanneal",
]


def test_every_arm_is_planned_and_verified_as_blend_plan_does(planned):
    index = json.loads((planned["out"] / "arms.json").read_text())
    assert [a["name"] for a in index["arms"]] == EXPECTED_ARMS and all(a["verified"] for a in index["arms"])
    arms = {a["name"]: a for a in index["arms"]}
    for name, arm in arms.items():
        plan = json.loads(Path(arm["plan_path"]).read_text())
        assert (planned["out"] / "arms" / name / "verify.json").is_file()
        assert plan["total_tokens"] == arm["total_tokens"] and plan["synthetic_tokens"] == arm["synthetic_tokens"]
        standin = [e for e in plan["entries"] if e["source"] != "synthetic"]
        assert [Path(e["prefix"]).name for e in standin] == ["standin_pydoc"]
    assert arms["baseline"]["synthetic_tokens"] == 0 and arms["all_synthetic"]["synthetic_tokens"] == 3840
    assert arms["microanneal"]["total_tokens"] == 7680 and arms["microanneal"]["synthetic_tokens"] == 3840
    assert arms["without_format_generative"]["synthetic_tokens"] + arms["without_format_multiple_choice"][
        "synthetic_tokens"
    ] == pytest.approx(3840, abs=2 * 128)
    cost = {"gpu_peak_tflops": 989.4, "mfu": 0.4}  # configs/base/ablate.yaml; the default preset's 8.03B parameters
    assert arms["microanneal"]["gpu_hours"] == pytest.approx(gpu_hours(7680, 8.03e9, cost))
    assert "WARNING the pretraining part is a STAND-IN" in planned["printed"] and "share_50pct" in planned["printed"]


def _launch(planned, tmp_path, *options: str, extra: tuple[str, ...] = ()) -> dict:
    from nemo_taskseed.cli import main

    argv = [
        "ablate",
        "launch",
        "--out",
        str(planned["out"]),
        *options,
        *planned["overrides"],
        f"launch.job_dir={tmp_path / 'jobs'}",
        "launch.account=llmres",
        "launch.partition=batch",
        "launch.container_image=nvcr.io/nvidia/nemo:25.11",
        "train.output_dir=/lustre/ablate",
        *extra,
    ]
    assert main(argv) == 0
    return argv


def test_sbatch_dry_run_of_every_arm_with_the_nemo2_recipe(planned, tmp_path, capsys):
    _launch(planned, tmp_path, "--backend", "sbatch", "--dry-run", extra=("train.framework=nemo2",))
    report = json.loads(capsys.readouterr().out)
    assert list(report["arms"]) == EXPECTED_ARMS and report["dry_run"] is True
    for name, arm in report["arms"].items():
        sbatch = Path(arm["sbatch"]).read_text()
        assert f"#SBATCH --job-name=taskseed-{name}-train" in sbatch
        assert f"-m nemo_taskseed.recipes.nemo2_continued_pretraining --spec {arm['spec']}" in sbatch
        spec = json.loads(Path(arm["spec"]).read_text())
        assert spec["output_dir"] == f"/lustre/ablate/{name}" and spec["framework"] == "nemo2"
        plan = json.loads(Path(spec["plan_path"]).read_text())
        assert spec["data_prefixes"] == [p for _, p in plan["data_paths"]]
        assert arm["results"] == f"/lustre/ablate/{name}/eval/results.jsonl" and arm["action"] == "dry run"
        assert f"--results /lustre/ablate/{name}/eval/results.jsonl" in Path(arm["eval_watcher"]).read_text()
    assert not (planned["out"] / "launch.json").exists()  # a dry run records no submission


def test_finished_and_submitted_arms_are_not_submitted_again(planned, tmp_path, capsys):
    """launch.json and the checkpoints on disk decide: a finished arm is never submitted again, one
    submitted before only with --resubmit ARM; the others are submitted (here: dry-run)."""
    from nemo_taskseed.ablate.launch import STATE_FILE

    out = tmp_path / "runs"
    (out / "baseline" / "checkpoints" / "iter_0000001").mkdir(parents=True)  # its last iteration (15,360 tokens)
    state = planned["out"] / STATE_FILE
    state.write_text(json.dumps({"arms": {"all_synthetic": {"submitted": "2026-12-07T00:00:00+00:00", "job_id": "7"}}}))
    try:
        actions = {}
        for options in ((), ("--resubmit", "all_synthetic")):
            _launch(planned, tmp_path, "--backend", "sbatch", "--dry-run", *options, extra=(f"train.output_dir={out}",))
            actions[options] = {n: a["action"] for n, a in json.loads(capsys.readouterr().out)["arms"].items()}
        first, second = actions[()], actions[("--resubmit", "all_synthetic")]
        assert first["baseline"] == second["baseline"] == "finished: not resubmitted"
        assert first["all_synthetic"] == (
            "submitted 2026-12-07T00:00:00+00:00: not resubmitted (--resubmit all_synthetic)"
        )
        assert second["all_synthetic"] == "dry run"
        assert {first[n] for n in EXPECTED_ARMS[2:]} == {"dry run"}
        assert json.loads(state.read_text())["arms"]["all_synthetic"]["job_id"] == "7"  # a dry run records nothing
    finally:
        state.unlink()


@pytest.mark.skipif(not LAUNCH_PYTHON.is_file(), reason=".venv-launch is absent (README (Training))")
@pytest.mark.subprocess
def test_nemo_run_dry_run_is_one_experiment_with_every_arm_and_bridge_settings(planned, tmp_path, capsys):
    from nemo_taskseed.paths import cache_dir
    from nemo_taskseed.train.bridge_schema import index_wheels, missing_settings

    _launch(planned, tmp_path, "--backend", "nemo_run", "--dry-run", extra=(f"launch.nemo_run_python={LAUNCH_PYTHON}",))
    report = json.loads(capsys.readouterr().out)
    request = json.loads((planned["out"] / "nemo_run" / "nemo_run_request.json").read_text())
    assert request["experiment"] == "taskseed-ablate" and [t["name"] for t in request["tasks"]] == EXPECTED_ARMS
    wheels = cache_dir("wheels")
    index = index_wheels(wheels) if list(wheels.glob("megatron_bridge-0.6.2-*.whl")) else None
    for name, arm in report["arms"].items():
        sbatch = Path(arm["nemo_run"]["sbatch"]).read_text()
        assert "#SBATCH --job-name=taskseed-" in sbatch and "#SBATCH --account=llmres" in sbatch
        assert f"-m nemo_taskseed.recipes.bridge_continued_pretraining --spec {arm['spec']}" in sbatch
        settings = json.loads((Path(arm["spec"]).parent / "bridge_settings.json").read_text())["settings"]
        plan = json.loads(Path(json.loads(Path(arm["spec"]).read_text())["plan_path"]).read_text())
        assert settings["dataset.data_path"][1::2] == [p for _, p in plan["data_paths"]]
        assert settings["checkpoint.save"] == f"/lustre/ablate/{name}/checkpoints"
        if index is not None:  # every path exists in megatron-bridge 0.6.2 (tests/test_train_bridge_schema.py)
            assert missing_settings(settings, index) == []


@pytest.mark.skipif(not NEMO2_PYTHON.is_file(), reason=".venv-nemo2 is absent (README (Training))")
@pytest.mark.subprocess
def test_every_arm_builds_the_nemo2_recipe(planned, tmp_path, capsys):
    _launch(
        planned,
        tmp_path,
        "--backend",
        "sbatch",
        "--dry-run",
        extra=("train.framework=nemo2", "train.recipe=llama32_1b"),
    )
    specs = [arm["spec"] for arm in json.loads(capsys.readouterr().out)["arms"].values()]
    probe = (
        "import json, sys\n"
        "from nemo_taskseed.train.nemo2 import build_nemo2_recipe, nemo2_summary\n"
        "from nemo_taskseed.train.spec import TrainingSpec\n"
        "print(json.dumps([nemo2_summary(build_nemo2_recipe(TrainingSpec.read(p))) for p in sys.argv[1:]], default=str))\n"
    )
    out = subprocess.run(
        [str(NEMO2_PYTHON), "-c", probe, *specs],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summaries = json.loads(out.stdout.strip().splitlines()[-1])
    for spec_path, summary in zip(specs, summaries, strict=True):
        spec = json.loads(Path(spec_path).read_text())
        assert summary["paths"][1::2] == spec["data_prefixes"]  # NeMo 2 takes [w1, p1, w2, p2, ...]
        assert summary["max_steps"] == spec["train_iters"] and summary["restore_path"] == spec["pretrained_checkpoint"]


@pytest.mark.subprocess
def test_the_cpu_toy_loop_plans_trains_scores_and_reports(planned, fixtures_hf):
    """The whole loop as a user runs it (`taskseed ablate launch --backend local`, then `report`),
    on three arms: each trains a tiny model on its blend, the eval watcher's code scores its last
    checkpoint with lm-eval (hf) on 10 real ARC-Easy test rows, and the report compares them."""
    eval_overrides = [
        "eval.backend=hf",
        "eval.device=cpu",
        "eval.dtype=float32",
        "eval.batch_size=8",
        "eval.run=[arc_easy]",
        "eval.limit=10",
        f"eval.local_data.arc_easy.test={fixtures_hf}/allenai/ai2_arc/ARC-Easy/test.jsonl",
        "ablate.launch_arms=[baseline,all_synthetic,without_format_generative]",
        "ablate.local.steps=12",
        "ablate.local.save_interval=12",
    ]
    common = ["--out", str(planned["out"]), *planned["overrides"], *eval_overrides]

    def taskseed(*argv: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "nemo_taskseed", "ablate", *argv, *common],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=planned["root"],
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    launched = taskseed("launch", "--backend", "local")
    printed = launched.stdout
    assert "ablation arms trained and scored here" in printed and "next: taskseed ablate report" in printed
    # transformers' and lm-eval's own progress bars and lm-eval's `git` call go to taskseed.log
    assert "Writing model shards" not in launched.stderr + printed and "not a git repository" not in launched.stderr
    assert "Running loglikelihood requests" in (planned["out"] / "taskseed.log").read_text()
    first = json.loads((planned["out"] / "launch.json").read_text())
    assert first["backend"] == "local" and list(first["arms"]) == [
        "baseline",
        "all_synthetic",
        "without_format_generative",
    ]
    for name, arm in first["arms"].items():
        assert arm["scored_now"] == ["step_12"]
        assert (Path(arm["checkpoints"]) / "iter_0000012" / "hf" / "config.json").is_file()
        rows = [json.loads(line) for line in Path(arm["results"]).read_text().splitlines()]
        assert [(r["benchmark"], r["step"], r["n_samples"], r["run"]) for r in rows] == [("arc_easy", 12, 10, name)]
    assert "nothing new" in taskseed("launch", "--backend", "local").stdout  # resumed: nothing scored twice
    again = json.loads((planned["out"] / "launch.json").read_text())
    assert all(arm["scored_now"] == [] for arm in again["arms"].values())

    printed = taskseed("report").stdout
    report = planned["out"] / "report"
    assert "| all_synthetic |" in printed and "| without_format_generative |" in printed and "STAND-IN" in printed
    csv_rows = (report / "ablation.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 2 * 2  # two arms x (arc_easy + its group)
    assert (report / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
