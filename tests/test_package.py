"""The package as a user installs it: config names resolve from any folder, `taskseed init` projects
layer over the packaged defaults, `taskseed run --dry-run` validates a whole job (the paper preset)
without loading or writing anything, and `taskseed estimate` works from stated rates."""

from __future__ import annotations

import os

import pytest

from nemo_taskseed.cli import main
from nemo_taskseed.config import ConfigError, load_config, resolve_config_path
from nemo_taskseed.paths import packaged_configs_dir


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working folder outside the checkout, with no project configs."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("TASKSEED_CONFIG_DIR", raising=False)
    return folder


def test_config_names_resolve_in_the_package_from_any_folder(elsewhere):
    assert resolve_config_path("default") == packaged_configs_dir() / "default.yaml"
    assert resolve_config_path("eval/cpu_smoke") == packaged_configs_dir() / "eval" / "cpu_smoke.yaml"
    # The path a checkout used to give still names the same file of the config tree.
    assert resolve_config_path("configs/default.yaml") == packaged_configs_dir() / "default.yaml"
    assert load_config("paper").seeds.targets.knowledge == 3_000_000
    with pytest.raises(ConfigError, match="config file not found: nosuch"):
        resolve_config_path("nosuch")


def test_init_copies_the_configs_and_a_project_layers_over_the_package(elsewhere, capsys):
    assert main(["init", "proj"]) == 0
    project = elsewhere / "proj" / "configs"
    packaged = sorted(p.relative_to(packaged_configs_dir()) for p in packaged_configs_dir().rglob("*.yaml"))
    assert sorted(p.relative_to(project) for p in project.rglob("*.yaml")) == packaged
    assert "taskseed run default" in capsys.readouterr().out
    # Edit a stage default and the job; delete a base file (it falls back to the package's).
    generate = project / "base" / "generate.yaml"
    generate.write_text(generate.read_text().replace("shard_size: 500", "shard_size: 7"))
    job = project / "default.yaml"
    job.write_text(job.read_text().replace("max_per_subtask: 2", "max_per_subtask: 3"))
    (project / "base" / "tokenize.yaml").unlink()
    os.chdir(elsewhere / "proj")
    cfg = load_config("default")
    assert cfg.generate.shard_size == 7 and cfg.seeds.max_per_subtask == 3
    assert cfg.tokenize == load_config(packaged_configs_dir() / "default.yaml").tokenize
    assert resolve_config_path("default").resolve() == job.resolve()
    # A folder that merely is called configs/ (no init marker) is not read as ours.
    os.chdir(elsewhere)
    (elsewhere / "configs" / "base").mkdir(parents=True)
    (elsewhere / "configs" / "base" / "hydra.yaml").write_text("defaults: []\n")
    assert load_config("default").generate.shard_size == 500
    os.chdir(elsewhere / "proj")
    # A second init keeps the user's edits; --force puts the packaged file back.
    assert main(["init", "."]) == 0
    assert "shard_size: 7" in generate.read_text()
    assert main(["init", ".", "--force"]) == 0
    assert "shard_size: 500" in generate.read_text()


def test_paper_dry_run_validates_and_plans_without_writing(elsewhere, capsys):
    assert main(["run", "paper", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "seeds planned: 4,500,000" in out and "generate shards: 2,250" in out
    assert "generator  Qwen/Qwen3-235B-A22B-Instruct-2507: vLLM, tensor parallel 8, 8 GPU(s)" in out
    assert out.count("verifier ") == 2 and "judge      openai/gpt-oss-120b" in out
    assert list(elsewhere.iterdir()) == []  # nothing written, not even a log folder


def test_dry_run_lists_every_setting_that_would_fail(elsewhere, capsys):
    code = main(["run", "default", "--dry-run", "enrich.variants=[label,essay]", "generate.shards_per_call=0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "enrich.variants: unknown ['essay']" in err and "generate.shards_per_call must be >= 1" in err
    assert list(elsewhere.iterdir()) == []


def test_paper_pipeline_launch_dry_run(elsewhere, capsys):
    assert main(["launch", "pipeline", "--config", "paper", "--dry-run", f"launch.job_dir={elsewhere}/jobs"]) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --nodes=16" in script and "#SBATCH --gpus-per-node=8" in script
    assert "python -m nemo_taskseed run paper run.executor=ray_data" in script
    assert "generate.backend.vllm.tensor_parallel_size=8" in script


def test_estimate_from_stated_rates_without_a_run(capsys):
    argv = ["estimate", "--tokens-per-seed", "1800", "--verify-tokens-per-seed", "900", "--gpu-tokens-per-s", "2500"]
    assert main([*argv, "--json"]) == 0
    import json

    projection = json.loads(capsys.readouterr().out)
    # 1,800 tokens x 4.5M seeds / 2,500 tokens/s / 3,600 s = 900 GPU-hours; verification 450.
    assert projection["stages"]["generate"]["gpu_hours"] == 900.0
    assert projection["stages"]["verify"]["gpu_hours"] == 450.0
    assert projection["total_gpu_hours"] == 1350.0
    assert projection["basis"].startswith("tokens per seed as stated")
    assert main(["estimate"]) == 2
    assert "give a finished RUN" in capsys.readouterr().err
