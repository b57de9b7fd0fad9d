"""README's default job, end to end, as a user gets it: the wheel built from this checkout, installed
into a fresh virtual environment over the dependencies already installed (no checkout on the path),
`taskseed run default` from an empty folder: demo mirror -> seeds -> generate (real 135M model on
vllm-cpu) -> filter -> tokenize (megatron-core) -> blend plan and verify."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from nemo_taskseed.pipeline.shards import read_part_records

pytestmark = pytest.mark.subprocess  # a wheel built and installed, taskseed commands

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip wheel .` makes, built from a copy of the sources (setuptools' build/ folder in
    the checkout would keep files deleted since)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "nemo_taskseed", src / "nemo_taskseed", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src), "-w", str(out)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("nemo_taskseed-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with only the wheel installed; the test environment's site-packages (the
    dependencies) reach it through a .pth line, which adds that folder to sys.path without running
    its .pth files, so this checkout's editable install does not come along."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (site / "taskseed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    return venv


def test_the_wheel_carries_configs_templates_and_recipes_and_pins_no_torch(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(REPO).as_posix() for p in (REPO / "nemo_taskseed" / "configs").rglob("*.yaml")}
    assert shipped and shipped <= names, sorted(shipped - names)
    for name in (
        "nemo_taskseed/configs/default.yaml",
        "nemo_taskseed/configs/paper.yaml",
        "nemo_taskseed/configs/base/filter.yaml",
        "nemo_taskseed/launch/templates/train.sbatch.j2",
        "nemo_taskseed/launch/templates/pipeline_ray.sbatch.j2",
        "nemo_taskseed/recipes/bridge_continued_pretraining.py",
        "nemo_taskseed/demo/data/arc_easy_train.jsonl",
    ):
        assert name in names, name
    metadata = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    core = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert core and not [line for line in core if line.split()[1].startswith("torch")], core
    cpu_extra = [line for line in metadata.splitlines() if 'extra == "cpu"' in line]
    assert any("torch==" in line for line in cpu_extra), cpu_extra  # the exact CPU torch is opt-in


@pytest.mark.ray
@pytest.mark.model
def test_default_job_runs_every_step_from_an_empty_folder_with_only_the_wheel(installed, tmp_path, model_dir):
    empty = tmp_path / "project"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["VLLM_CPU_KVCACHE_SPACE"] = "1"
    where = subprocess.run(
        [
            installed / "bin" / "python",
            "-c",
            "import json, sys, nemo_taskseed; print(nemo_taskseed.__file__); print(json.dumps(sys.path))",
        ],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert where[0].startswith(str(installed)), where
    assert not [p for p in json.loads(where[1]) if p and Path(p).resolve() == REPO], where[1]
    proc = subprocess.run(
        [installed / "bin" / "taskseed", "run", "default"], cwd=empty, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    workdir = empty / "runs" / "default"  # the packaged default job writes under ./runs/default
    # Quiet terminal: third-party INFO (vLLM, Ray, Curator) went to the run's log file; what is
    # left fits on about two screens and ends with the per-step summary (measured: ~120 lines).
    terminal = (proc.stdout + proc.stderr).splitlines()
    assert not [line for line in terminal if " INFO " in line or "| INFO" in line], terminal
    assert len(terminal) < 200, len(terminal)
    assert "taskseed run" in proc.stdout and proc.stdout.rstrip().splitlines()[-1].startswith("outputs under")
    log = (workdir / "taskseed.log").read_text()
    assert " INFO vllm[" in log and "Planning pipeline: taskseed_filter" in log  # vLLM and Curator logged there
    steps = json.loads((workdir / "run_summary.json").read_text())["steps"]
    assert list(steps) == ["catalog", "seeds", "generate", "filter", "tokenize", "blend"]
    assert steps["seeds"]["kept"] == 10  # 2 per demo subtask
    generated = read_part_records(workdir / "generate", "generated")
    assert generated and {r["variant"] for r in generated} == {"label", "answer", "reasoning", "context"}
    # One shard per demo subtask (2 seeds each), every one finished with its marker.
    assert steps["generate"]["shards"]["total"] == 5 == len(list((workdir / "generate/shards").glob("*.json")))
    curated = read_part_records(workdir / "filter", "curated")
    # Every filter shows in the summary; the demo mirror's scored splits give decontamination an
    # index (all 10 splits the five demo benchmarks score), and its planted leak is found: the
    # training row Demo_ARC_0 is also ARC-Easy test row Demo_ARC_test_0.
    table = (workdir / "filter" / "quality_summary.txt").read_text()
    from nemo_taskseed.filter.checks import stage_order

    for check in stage_order()[1:]:  # every registered check has its row (verify's says off)
        assert f"\n{check} " in table, table
    # The benchmarks checked with their splits, and the diversity table with its plot (docs/decontamination.md).
    assert "decontamination: 5 benchmarks checked" in table and "filter: diversity and novelty" in table
    assert (workdir / "filter" / "diversity.png").is_file()
    assert "\nverify " in table and "off" in table.split("\nverify ")[1].splitlines()[0]
    contamination = json.loads((workdir / "filter" / "contamination_report.json").read_text())
    assert len(contamination["coverage"]) == 10 and contamination["missing_splits"] == []
    assert [(s["task"], s["split"]) for s in contamination["seeds"]] == [("arc_easy", "allenai/ai2_arc/ARC-Easy:test")]
    warnings = steps["filter"]["warnings"]
    assert warnings[0] == "verification is off (filter.verify.enabled=false): answers were not checked"
    # The demo checks its 5 benchmarks only, and says so.
    assert len(warnings) == 2 and warnings[1].startswith("decontamination does not check 11 of the default benchmarks")
    # What the 135M model writes does not all pass the rule checks (measured: 22 of 29 documents dropped).
    assert any(
        r.split(":")[0] in ("text_quality", "item_rules", "explanation") for r in steps["filter"]["rejected_by_reason"]
    )
    # No kept generative answer is a piece of its question or stops mid-sentence (the 135M model
    # writes such answers; filter/quality/answer_form.py drops them).
    from nemo_taskseed.config import load_config
    from nemo_taskseed.filter.quality.answer_form import AnswerFormSettings, answer_form_failures

    answer_form = AnswerFormSettings.from_config(load_config())
    assert [r["id"] for r in curated if answer_form_failures(r, answer_form)] == []
    assert steps["tokenize"]["documents"] == len(curated) > 0
    plan = json.loads((workdir / "blend/plan.json").read_text())
    assert abs(sum(w for w, _ in plan["data_paths"]) - 1.0) < 1e-9
    assert plan["total_tokens"] == 1000
    for _, prefix in plan["data_paths"]:
        assert (empty / f"{prefix}.bin").is_file() and (empty / f"{prefix}.idx").is_file()
    # The result handed on: `taskseed export` from the same empty folder, loaded back with `datasets`
    # record for record; the card's header carries the license the sources allow.
    env_offline = {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [installed / "bin" / "taskseed", "export", "runs/default", "--out", "dataset"],
        cwd=empty,
        capture_output=True,
        text=True,
        env=env_offline,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    import datasets
    import yaml

    from nemo_taskseed.export.dataset import FORMATS, row_to_record

    loaded = datasets.load_dataset(str(empty / "dataset"), cache_dir=str(tmp_path / "hf_cache"))["train"]
    assert [row_to_record(r) for r in loaded] == [r for fmt in FORMATS for r in curated if r["format"] == fmt]
    header = yaml.safe_load((empty / "dataset" / "README.md").read_text().split("---\n")[1])
    # The demo mirror's openbookqa rows carry no sourced license ("unknown"): the output is not cleared
    # as one license, the card says `other` and lists the terms per source.
    assert header["license"] == "other" and f"license: {header['license']}" in proc.stdout
    # The paper's GPU run resolves and validates there too, loading and writing nothing.
    before = sorted(p.name for p in empty.iterdir())
    proc = subprocess.run(
        [installed / "bin" / "taskseed", "run", "paper", "--dry-run"],
        cwd=empty,
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "seeds planned: 4,500,000" in proc.stdout and sorted(p.name for p in empty.iterdir()) == before
