"""Continued-pretraining recipes: plan.json -> training spec -> Megatron-Bridge settings / NeMo 2 recipe.

Megatron-Bridge 0.6.2 cannot be imported on this machine (Python 3.12 + CUDA Transformer Engine,
see README (Training)), so the Bridge side is checked up to that boundary: the settings
our recipe applies, by ConfigContainer attribute path. The NeMo 2 recipe is built for real in
its own environment (.venv-nemo2).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from nemo_taskseed.errors import UserError
from nemo_taskseed.train.bridge import bridge_settings, set_by_path
from nemo_taskseed.train.plan import load_plan, train_iters_for
from nemo_taskseed.train.spec import build_spec, load_train_config

REPO = Path(__file__).resolve().parent.parent
NEMO2_PYTHON = REPO / ".venv-nemo2" / "bin" / "python"
HUNDRED_B = 100_000_000_000


def write_plan(folder: Path, *, seq_length: int = 8192, total_tokens: int = HUNDRED_B) -> Path:
    """A plan.json as `taskseed blend plan` writes it (fields training reads, plus entries)."""
    plan = {
        "seq_length": seq_length,
        "total_tokens": total_tokens,
        "data_paths": [
            [0.7, "/lustre/data/web/web_text_document"],
            [0.3, "/lustre/data/taskseed/synthetic_qa_text_document"],
        ],
        "entries": [
            {"name": "web", "weight": 0.7, "tokens": 70_000_000_000},
            {"name": "taskseed", "weight": 0.3, "tokens": 30_000_000_000},
        ],
        "tokenizer": {"path": "/lustre/tok/llama31_8b"},
    }
    path = folder / "plan.json"
    path.write_text(json.dumps(plan))
    return path


@pytest.fixture()
def plan_path(tmp_path) -> Path:
    return write_plan(tmp_path)


def test_train_iters_is_the_token_budget_over_tokens_per_step():
    assert train_iters_for(HUNDRED_B, 512, 8192) == math.ceil(HUNDRED_B / (512 * 8192)) == 23842
    assert train_iters_for(512 * 8192, 512, 8192) == 1  # exact fit: no extra step
    assert train_iters_for(512 * 8192 + 1, 512, 8192) == 2


def test_llama31_8b_spec_takes_blend_budget_and_checkpoint(plan_path):
    cfg = load_train_config(None, [f"train.plan={plan_path}", "train.output_dir=/lustre/runs/cpt1"])
    spec = build_spec(cfg)
    assert spec.recipe == "llama31_8b" and spec.framework == "bridge"
    assert spec.train_iters == 23842  # 100B / (512 x 8192)
    assert spec.seq_length == 8192 and spec.global_batch_size == 512
    assert spec.data_prefixes == [
        "/lustre/data/web/web_text_document",
        "/lustre/data/taskseed/synthetic_qa_text_document",
    ]
    assert spec.data_weights == [0.7, 0.3]
    assert spec.pretrained_checkpoint == "/lustre/runs/cpt1/pretrained"
    assert spec.checkpoint_dir == "/lustre/runs/cpt1/checkpoints"
    assert spec.tokenizer == spec.hf_model_id == "meta-llama/Llama-3.1-8B"
    assert spec.plan_tokenizer == "/lustre/tok/llama31_8b"  # from the tokenize manifest, shown in dry runs
    # Short warmup: 0.5% of the run (capped at 2000), then decay to the floor over the whole run.
    assert spec.warmup_iters == math.ceil(0.005 * 23842) == 120
    assert spec.min_lr < spec.lr
    # 4 nodes x 8 GPUs with CP=2 -> 16-way data parallel.
    assert (spec.world_size, spec.context_parallel, spec.data_parallel) == (32, 2, 16)


def test_bridge_settings_carry_data_iterations_checkpoints_tokenizer(plan_path):
    cfg = load_train_config(
        None,
        [
            f"train.plan={plan_path}",
            "train.output_dir=/lustre/runs/cpt1",
            "train.pretrained_checkpoint=/lustre/ckpt/llama31_8b_mcore",
        ],
    )
    s = bridge_settings(build_spec(cfg))
    assert s["dataset.data_path"] == [
        "0.7",
        "/lustre/data/web/web_text_document",
        "0.3",
        "/lustre/data/taskseed/synthetic_qa_text_document",
    ]
    assert s["dataset.blend"] is None  # Bridge builds the blend from data_path in finalize()
    assert s["dataset.seq_length"] == s["model.seq_length"] == 8192
    assert s["train.train_iters"] == s["scheduler.lr_decay_iters"] == 23842
    assert s["scheduler.lr_warmup_iters"] == 120
    assert (s["optimizer.lr"], s["optimizer.min_lr"], s["scheduler.lr_decay_style"]) == (3e-5, 3e-6, "cosine")
    assert s["checkpoint.pretrained_checkpoint"] == "/lustre/ckpt/llama31_8b_mcore"
    assert s["checkpoint.save"] == s["checkpoint.load"] == "/lustre/runs/cpt1/checkpoints"
    assert s["checkpoint.also_save_hf_checkpoint"] is True  # the eval watcher scores iter_*/hf
    assert s["tokenizer.tokenizer_type"] == "HuggingFaceTokenizer"
    assert s["tokenizer.tokenizer_model"] == "meta-llama/Llama-3.1-8B"
    assert s["model.context_parallel_size"] == 2


def test_nemotron_preset_and_command_line_overrides(plan_path):
    cfg = load_train_config(
        None,
        [
            f"train.plan={plan_path}",
            "train.recipe=nemotronh_8b",
            "train.global_batch_size=1024",
            "train.lr=1e-5",
            "train.min_lr=1e-6",
            "train.decay_style=linear",
            "launch.nodes=8",
        ],
    )
    spec = build_spec(cfg)
    s = bridge_settings(spec)
    assert spec.bridge_recipe == "megatron.bridge.recipes.nemotronh:nemotronh_8b_pretrain_config"
    assert spec.hf_model_id == "nvidia/Nemotron-H-8B-Base-8K"
    assert s["train.train_iters"] == math.ceil(HUNDRED_B / (1024 * 8192)) == 11921
    assert (s["optimizer.lr"], s["scheduler.lr_decay_style"]) == (1e-5, "linear")
    assert (s["model.tensor_model_parallel_size"], s["model.sequence_parallel"]) == (2, True)
    assert spec.data_parallel == 8 * 8 // 2


def test_plan_total_tokens_can_be_overridden(plan_path):
    spec = build_spec(load_train_config(None, [f"train.plan={plan_path}", "train.total_tokens=1000000000"]))
    assert spec.train_iters == math.ceil(1e9 / (512 * 8192)) == 239


@pytest.mark.parametrize(
    "override, message",
    [
        (["train.seq_length=4096"], "differs from the plan's seq_length"),
        (["train.global_batch_size=100"], "must be a multiple of"),
        (["launch.nodes=1", "launch.gpus_per_node=3"], "not divisible by TP"),
        (["train.min_lr=1.0"], "min_lr"),
        (["train.recipe=gpt5"], "unknown train.recipe"),
    ],
)
def test_impossible_runs_are_user_errors(plan_path, override, message):
    with pytest.raises(UserError, match=message):
        build_spec(load_train_config(None, [f"train.plan={plan_path}", *override]))


def test_bad_plans_name_the_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"seq_length": 4096, "total_tokens": 10, "data_paths": [[0.5, "x.bin"]]}))
    with pytest.raises(UserError, match=r"data_paths\[0\] must be a prefix without .bin"):
        load_plan(bad)
    bad.write_text(json.dumps({"seq_length": 4096, "data_paths": []}))
    with pytest.raises(UserError, match="missing field 'total_tokens'"):
        load_plan(bad)
    with pytest.raises(UserError, match="blend plan not found"):
        load_plan(tmp_path / "nope.json")


def test_one_plan_reader_for_training_and_blend_verify(plan_path):
    # A hand-written plan (no schema tag, weights Megatron will normalize) is fine for training;
    # `blend verify` reads with the same reader but insists on what `blend plan` writes.
    from nemo_taskseed.blend.planner import read_plan
    from nemo_taskseed.schema.plan import PlanError

    plan = json.loads(plan_path.read_text())
    plan["data_paths"] = [[7, plan["data_paths"][0][1]], [3, plan["data_paths"][1][1]]]
    plan_path.write_text(json.dumps(plan))
    assert load_plan(plan_path).weights == [7.0, 3.0]
    with pytest.raises(PlanError, match="schema"):
        read_plan(plan_path)
    plan["schema"] = "taskseed.blend-plan/1"
    plan_path.write_text(json.dumps(plan))
    with pytest.raises(PlanError, match="weights sum to 10, not 1"):
        read_plan(plan_path)


def test_set_by_path_refuses_unknown_fields():
    class Section:
        train_iters = 1

    class Container:
        train = Section()

    root = Container()
    set_by_path(root, "train.train_iters", 7)
    assert root.train.train_iters == 7
    with pytest.raises(AttributeError, match="no field 'train_itres'"):
        set_by_path(root, "train.train_itres", 7)


def test_bridge_recipe_script_dry_run_prints_settings_and_overrides(plan_path, tmp_path, capsys):
    """The recipe's entry point (what `torchrun -m nemo_taskseed.recipes.bridge_continued_pretraining`
    calls per rank) with --dry-run: the settings it would apply, without importing Megatron-Bridge."""
    from nemo_taskseed.recipes.bridge_continued_pretraining import main

    spec = build_spec(load_train_config(None, [f"train.plan={plan_path}"]))
    spec_path = spec.write(tmp_path / "training_spec.json")
    assert main(["--spec", str(spec_path), "--dry-run", "model.recompute_granularity=full"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["bridge_recipe"] == "megatron.bridge.recipes.llama:llama31_8b_pretrain_config"
    assert printed["settings"]["train.train_iters"] == 23842
    assert printed["extra_overrides"] == ["model.recompute_granularity=full"]


@pytest.mark.skipif(
    not NEMO2_PYTHON.is_file(),
    reason=".venv-nemo2 is absent: nemo_toolkit[llm]==2.7.3 pins transformers~=4.57/numpy<2 and "
    "needs its own env (see README (Training) for the install command)",
)
@pytest.mark.subprocess
def test_nemo2_recipe_is_built_with_the_same_blend_and_budget(tmp_path):
    plan_path = write_plan(tmp_path, seq_length=8192)
    cfg = load_train_config(
        None,
        [
            f"train.plan={plan_path}",
            "train.recipe=llama32_1b",
            "train.framework=nemo2",
            "train.output_dir=/lustre/runs/nemo2",
            "train.tokenizer=/lustre/tok/llama32",
        ],
    )
    spec = build_spec(cfg)
    spec_path = spec.write(tmp_path / "training_spec.json")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [
            str(NEMO2_PYTHON),
            "-m",
            "nemo_taskseed.recipes.nemo2_continued_pretraining",
            "--spec",
            str(spec_path),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout[out.stdout.index("{") :])
    assert summary["paths"] == [
        "0.7",
        "/lustre/data/web/web_text_document",
        "0.3",
        "/lustre/data/taskseed/synthetic_qa_text_document",
    ]
    assert summary["max_steps"] == spec.train_iters == math.ceil(HUNDRED_B / (256 * 8192))
    assert summary["seq_length"] == 8192 and summary["global_batch_size"] == 256
    assert summary["tokenizer"] == "/lustre/tok/llama32"
    assert summary["restore_path"] == "/lustre/runs/nemo2/pretrained"
    assert summary["warmup_steps"] == spec.warmup_iters and summary["min_lr"] == spec.min_lr
    assert summary["every_n_train_steps"] == 1000
    assert (summary["num_nodes"], summary["devices"]) == (1, 8)


def test_nemo2_recipe_outside_its_environment_is_one_clear_line(tmp_path, capsys):
    """In the pipeline's environment (no nemo_toolkit) the NeMo 2 entry point reads the spec and
    stops with one line naming where it runs; the recipe itself is built in .venv-nemo2 above."""
    import importlib.util

    from nemo_taskseed.recipes.nemo2_continued_pretraining import main

    if importlib.util.find_spec("nemo") is not None:
        pytest.skip("nemo_toolkit is installed in this interpreter: the recipe would build")
    cfg = load_train_config(None, [f"train.plan={write_plan(tmp_path)}", "train.framework=nemo2"])
    spec_path = build_spec(cfg).write(tmp_path / "training_spec.json")
    assert main(["--spec", str(spec_path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nemo2_continued_pretraining: the NeMo 2 recipe runs where nemo_toolkit[llm] 2.7")
    assert ".venv-nemo2" in err and "Traceback" not in err
