"""Slurm launch dry runs: the scripts are checked for resources, container, data paths, iterations.

No cluster here: sbatch/torchrun scripts are rendered and inspected; NeMo-Run's SlurmExecutor
writes its sbatch script through `Experiment.dryrun()` in `.venv-launch` (nemo-run 0.11.1 pins
downgrade packages the main env relies on, see README (Training)).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from test_train_recipes import write_plan  # tests/ is on sys.path (rootdir conftest, no __init__.py)

from nemo_taskseed.cli import main

REPO = Path(__file__).resolve().parent.parent
LAUNCH_PYTHON = REPO / ".venv-launch" / "bin" / "python"


def _launch_train(tmp_path, capsys, *options: str, overrides: tuple[str, ...] = ()) -> dict:
    """Options first, then every key=value together (argparse takes one run of positionals)."""
    plan = write_plan(tmp_path)
    argv = [
        "launch",
        "train",
        "--dry-run",
        *options,
        "--plan",
        str(plan),
        f"launch.job_dir={tmp_path / 'jobs'}",
        "launch.account=llmres",
        "launch.partition=batch_block1",
        "launch.nodes=2",
        "launch.container_image=nvcr.io/nvidia/nemo:25.11",
        "launch.time=06:00:00",
        "launch.container_mounts=[/lustre:/lustre]",
        "train.output_dir=/lustre/runs/cpt1",
        *overrides,
    ]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_sbatch_dry_run_has_resources_container_data_and_iterations(tmp_path, capsys):
    report = _launch_train(tmp_path, capsys, "--backend", "sbatch")
    assert report["dry_run"] is True and report["train_iters"] == 23842
    assert (report["tokenizer"], report["plan_tokenizer"]) == ("meta-llama/Llama-3.1-8B", "/lustre/tok/llama31_8b")
    sbatch = Path(report["files"]["sbatch"]).read_text()
    for line in (
        "#SBATCH --account=llmres",
        "#SBATCH --partition=batch_block1",
        "#SBATCH --nodes=2",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --time=06:00:00",
        "#SBATCH --ntasks-per-node=1",
    ):
        assert line in sbatch
    assert "--container-image=nvcr.io/nvidia/nemo:25.11" in sbatch
    assert "--container-mounts=/lustre:/lustre" in sbatch
    assert "torchrun --nnodes=2 --nproc-per-node=8" in sbatch
    assert "export PYTHONPATH" not in sbatch  # the image has the package (launch.package_dir unset)
    assert "-m nemo_taskseed.recipes.bridge_continued_pretraining --spec " in sbatch
    assert "23842 iterations x 512 x 8192 tokens" in sbatch
    spec = json.loads(Path(report["files"]["spec"]).read_text())
    assert spec["train_iters"] == 23842 and spec["nodes"] == 2
    assert spec["data_prefixes"] == [
        "/lustre/data/web/web_text_document",
        "/lustre/data/taskseed/synthetic_qa_text_document",
    ]
    settings = json.loads(Path(report["files"]["settings"]).read_text())["settings"]
    assert settings["dataset.data_path"][1] == "/lustre/data/web/web_text_document"
    assert settings["checkpoint.save"] == "/lustre/runs/cpt1/checkpoints"


def test_torchrun_script_for_one_node(tmp_path, capsys):
    report = _launch_train(
        tmp_path, capsys, "--backend", "torchrun", overrides=("launch.nodes=1", "train.recipe=llama32_1b")
    )
    script = Path(report["files"]["torchrun"]).read_text()
    assert "torchrun --standalone --nnodes=1 --nproc-per-node=8" in script
    assert "-m nemo_taskseed.recipes.bridge_continued_pretraining --spec" in script
    assert report["train_iters"] == 47684  # 100B / (256 x 8192), the 1B preset's batch


def test_nemo2_framework_points_the_job_at_the_nemo2_recipe(tmp_path, capsys):
    report = _launch_train(tmp_path, capsys, "--backend", "sbatch", "--framework", "nemo2", "--recipe", "llama31_8b")
    assert "-m nemo_taskseed.recipes.nemo2_continued_pretraining --spec" in Path(report["files"]["sbatch"]).read_text()


def test_eval_watcher_job_is_written_next_to_training(tmp_path, capsys):
    report = _launch_train(
        tmp_path,
        capsys,
        "--backend",
        "sbatch",
        "--with-eval-watcher",
        overrides=(
            "launch.eval_watcher.gpus_per_node=1",
            "launch.eval_watcher.baseline=/lustre/hf/Llama-3.1-8B",
            "launch.eval_watcher.config=configs/eval/cluster_vllm.yaml",
            "launch.eval_watcher.overrides=[eval.limit=500]",
        ),
    )
    watcher = Path(report["files"]["eval_watcher"]).read_text()
    assert "#SBATCH --gpus-per-node=1" in watcher and "#SBATCH --nodes=1" in watcher
    assert "python -m nemo_taskseed evaluate watch --checkpoints /lustre/runs/cpt1/checkpoints" in watcher
    assert "--results /lustre/runs/cpt1/eval/results.jsonl --baseline /lustre/hf/Llama-3.1-8B" in watcher
    assert "--config configs/eval/cluster_vllm.yaml eval.limit=500" in watcher


def test_bad_slurm_time_is_a_user_error(tmp_path, capsys):
    plan = write_plan(tmp_path)
    code = main(
        [
            "launch",
            "train",
            "--dry-run",
            "--backend",
            "sbatch",
            "--plan",
            str(plan),
            f"launch.job_dir={tmp_path}",
            "launch.time=6h",
        ]
    )
    assert code == 2
    assert "Slurm time must look like HH:MM:SS" in capsys.readouterr().err


@pytest.mark.skipif(
    not LAUNCH_PYTHON.is_file(),
    reason=".venv-launch is absent: nemo-run==0.11.1 + leptonai<0.47 would downgrade starlette, "
    "urllib3, httpx, anyio in the main env; create it as README (Training) says",
)
@pytest.mark.subprocess
def test_nemo_run_slurm_executor_dry_run_writes_sbatch(tmp_path, capsys):
    report = _launch_train(
        tmp_path,
        capsys,
        "--backend",
        "nemo_run",
        overrides=(
            "launch.env={HF_HOME: /lustre/hf}",
            "launch.package_dir=/lustre/sw/taskseed",
            f"launch.nemo_run_python={LAUNCH_PYTHON}",
        ),
    )
    result = report["nemo_run"]
    assert result["dry_run"] is True
    assert result["executor"]["nodes"] == 2 and result["executor"]["gpus_per_node"] == 8
    sbatch = Path(result["sbatch"]).read_text()
    for line in (
        "#SBATCH --account=llmres",
        "#SBATCH --partition=batch_block1",
        "#SBATCH --nodes=2",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --time=06:00:00",
        "#SBATCH --job-name=taskseed-train",
    ):
        assert line in sbatch
    assert "--container-image nvcr.io/nvidia/nemo:25.11" in sbatch
    assert "/lustre:/lustre" in sbatch
    assert "export HF_HOME=/lustre/hf" in sbatch and "export PYTHONPATH=/lustre/sw/taskseed" in sbatch
    assert "torchrun" in sbatch and "--nnodes 2 --nproc-per-node 8" in sbatch
    assert "-m nemo_taskseed.recipes.bridge_continued_pretraining --spec " in sbatch


def test_pipeline_dry_run_is_a_multinode_ray_job(tmp_path, capsys):
    assert (
        main(
            [
                "launch",
                "pipeline",
                "--dry-run",
                f"launch.job_dir={tmp_path}",
                "launch.pipeline.nodes=4",
                "launch.pipeline.gpus_per_node=8",
                "launch.pipeline.vllm_tensor_parallel=2",
                "launch.account=llmres",
                "launch.container_mounts=[/lustre:/lustre]",
            ]
        )
        == 0
    )
    script = capsys.readouterr().out
    assert "#SBATCH --nodes=4" in script and "#SBATCH --gpus-per-node=8" in script
    assert "ray start --head" in script and 'ray start --address="$RAY_ADDRESS" --num-gpus=8' in script
    # Generation runs on Ray too, so its shards spread over every node's GPUs.
    assert (
        "generate.executor=ray_data generate.backend.kind=vllm generate.backend.gpus=2 generate.backend.vllm.tensor_parallel_size=2"
        in script
    )
    assert "python -m nemo_taskseed run default run.executor=ray_data" in script
    assert "--container-mounts=/lustre:/lustre" in script


def test_pipeline_with_vllm_serve_endpoint(tmp_path, capsys):
    assert (
        main(
            [
                "launch",
                "pipeline",
                "--dry-run",
                f"launch.job_dir={tmp_path}",
                "launch.pipeline.generation=vllm_serve",
                "launch.pipeline.model=/lustre/models/qwen3-32b",
                "launch.pipeline.vllm_tensor_parallel=4",
            ]
        )
        == 0
    )
    script = capsys.readouterr().out
    assert "vllm.entrypoints.openai.api_server --model /lustre/models/qwen3-32b" in script
    assert "--tensor-parallel-size 4 --data-parallel-size 2" in script
    # One server per node; the generate step balances over all of them.
    assert 'for node in "${nodes[@]}"; do' in script and 'endpoints+=("http://$node_ip:8000/v1")' in script
    assert "generate.executor=ray_data" in script and "generate.backend.kind=openai" in script
    assert "generate.backend.openai.base_url=$base_urls" in script
    assert "export RAY_AUTH_MODE=token" in script  # the driver joins a token-authenticated cluster
    # The job makes its own token (a fresh cluster home has no ~/.ray/auth_token): 64 hex digits.
    make_token = next(line for line in script.splitlines() if line.startswith("RAY_AUTH_TOKEN="))
    assert "export RAY_AUTH_TOKEN" in script
    token = subprocess.run(
        ["bash", "-c", f"set -euo pipefail; {make_token}; echo $RAY_AUTH_TOKEN"], capture_output=True, text=True
    )
    assert token.returncode == 0 and re.fullmatch(r"[0-9a-f]{64}", token.stdout.strip()), token
    script_file = tmp_path / "pipeline.sbatch"
    script_file.write_text(script[script.index("#!/bin/bash") :])
    check = subprocess.run(["bash", "-n", str(script_file)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_pipeline_vllm_serve_needs_a_model(tmp_path, capsys):
    assert (
        main(["launch", "pipeline", "--dry-run", f"launch.job_dir={tmp_path}", "launch.pipeline.generation=vllm_serve"])
        == 2
    )
    assert "needs launch.pipeline.model" in capsys.readouterr().err


def test_nemo_run_requests_are_checked_before_nemo_run_is_imported(tmp_path, capsys):
    """launch/nemo_run_submit.py runs in the NeMo-Run interpreter (.venv-launch; the dry run above);
    reading its request needs only the standard library and stops on a bad file with the field named."""
    import json

    from nemo_taskseed.launch.nemo_run_submit import RequestError, main, read_request

    spec = tmp_path / "training_spec.json"
    spec.write_text(json.dumps({"nodes": 2, "gpus_per_node": 8}))
    launch = {"job_name": "taskseed", "partition": "batch"}
    command = ["-m", "nemo_taskseed.recipes.bridge_continued_pretraining", "--spec", str(spec)]
    one = tmp_path / "one.json"
    one.write_text(
        json.dumps({"spec": str(spec), "command": command, "launch": launch, "out_dir": "o", "dry_run": True})
    )
    request = read_request(one)
    assert request["experiment"] == "taskseed-train" and request["dry_run"] is True
    assert request["tasks"] == [
        {
            "name": "train",
            "spec": str(spec),
            "nodes": 2,
            "gpus_per_node": 8,
            "module": "nemo_taskseed.recipes.bridge_continued_pretraining",
            "args": ["--spec", str(spec)],
        }
    ]
    arms = [{"name": n, "spec": str(spec), "command": command} for n in ("baseline", "all_synthetic")]
    several = tmp_path / "several.json"
    several.write_text(
        json.dumps({"tasks": arms, "launch": launch, "out_dir": "o", "dry_run": False, "experiment": "abl"})
    )
    assert [t["name"] for t in read_request(several)["tasks"]] == ["baseline", "all_synthetic"]

    bad = tmp_path / "bad.json"
    for body, message in (
        ({"tasks": arms, "launch": launch, "out_dir": "o"}, r"missing field\(s\) \['dry_run'\]"),
        ({"tasks": [arms[0], arms[0]], "launch": launch, "out_dir": "o", "dry_run": True}, "task names repeat"),
        (
            {
                "tasks": [arms[0], {**arms[1], "command": ["train.py"]}],
                "launch": launch,
                "out_dir": "o",
                "dry_run": True,
            },
            r"tasks\[1\].command must start with -m MODULE",
        ),
        (
            {
                "tasks": [{**arms[0], "spec": str(tmp_path / "none.json")}],
                "launch": launch,
                "out_dir": "o",
                "dry_run": 1,
            },
            r"tasks\[0\].spec .*none.json",
        ),
    ):
        bad.write_text(json.dumps(body))
        with pytest.raises(RequestError, match=message):
            read_request(bad)
    bad.write_text("{not json")
    assert main([str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"nemo_run_submit: {bad}: not a readable JSON request")
