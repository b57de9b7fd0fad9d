"""The CPU toy training path of an ablation arm: real fixture rows tokenized into Megatron prefixes,
a real plan, megatron-core's blended GPTDataset, a tiny Llama trained for a few dozen steps,
checkpoints the eval watcher finds and lm-eval's hf model loads. Only the 135M model's tokenizer
is used (the data's tokenizer), never the model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from nemo_taskseed.ablate.cpu_train import CpuTrainSettings, checkpoint_dir, read_train_log, train_on_plan
from nemo_taskseed.config import load_config
from nemo_taskseed.errors import UserError

SETTINGS = CpuTrainSettings.from_config(load_config(), steps=16, micro_batch_size=4, save_interval=8, seq_length=128)


@pytest.fixture(scope="module")
def arm_plan(tmp_path_factory, fixtures_hf, model_dir) -> dict:
    """A synthetic-only plan over four prefixes tokenized from real benchmark training rows."""
    from test_tokenize import tokenize_fixture_documents

    from nemo_taskseed.blend import plan_from_config

    root = tmp_path_factory.mktemp("arm")
    tokenize_fixture_documents(root, fixtures_hf, model_dir)
    cfg = load_config(
        None,
        [
            f"blend.manifest={root / 'tok'}",
            "blend.total_tokens=20000",
            "blend.seq_length=128",
            "blend.max_epochs=200",
            "blend.group_quotas.knowledge=0.5",
            "blend.group_quotas.reasoning=0.5",
            "blend.format_quotas=null",
            "blend.plot=false",
        ],
    )
    return plan_from_config(cfg.blend)


@pytest.fixture(scope="module")
def trained(arm_plan, tmp_path_factory):
    out = tmp_path_factory.mktemp("cpu_train") / "checkpoints"
    paths = train_on_plan(arm_plan, out, SETTINGS)
    return {"out": out, "paths": paths, "log": read_train_log(out)}


def test_loss_decreases(trained):
    losses = [row["loss"] for row in trained["log"]]
    assert [row["step"] for row in trained["log"]] == list(range(1, SETTINGS.steps + 1))
    first, last = np.mean(losses[:4]), np.mean(losses[-4:])
    assert first > 10.0  # ~ln(49152) = 10.8: a model from scratch
    assert last < first - 1.5, losses


def test_checkpoints_load_with_transformers_and_lm_eval_and_the_watcher_finds_them(trained):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nemo_taskseed.evaluate.watcher import find_checkpoints

    out = trained["out"]
    assert trained["paths"] == [checkpoint_dir(out, s) / "hf" for s in (8, 16)]
    assert [(c.step, c.model_dir) for c in find_checkpoints(out)] == [
        (s, out / f"iter_{s:07d}" / "hf") for s in (8, 16)
    ]
    assert not list(out.glob("*.tmp*"))

    last = trained["paths"][-1]
    model = AutoModelForCausalLM.from_pretrained(last)
    tokenizer = AutoTokenizer.from_pretrained(last)
    assert model.config.vocab_size == len(tokenizer) == 49152
    ids = tokenizer("Question: What is 2 + 3?\nAnswer:", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=ids).logits).all()

    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(last), device="cpu", batch_size=2)
    request = Instance("loglikelihood", doc={}, arguments=("Question: What is 2 + 3?\nAnswer:", " 5"), idx=0)
    [(logprob, _)] = lm.loglikelihood([request])
    assert np.isfinite(logprob) and logprob < 0


def test_tokens_seen_per_dataset_follow_the_plan(trained, arm_plan):
    from nemo_taskseed.blend.verify import build_megatron_blend

    seen = np.sum([row["samples_per_dataset"] for row in trained["log"]], axis=0)
    n = SETTINGS.steps * SETTINGS.micro_batch_size
    assert seen.sum() == n
    # What the model saw is megatron-core's blend, sample for sample (its cache, same seed).
    plan = {**arm_plan, "seq_length": SETTINGS.seq_length}
    dataset = build_megatron_blend(plan, arm_plan["tokenizer"]["path"], n, cache_dir=trained["out"] / "megatron_cache")
    assert np.array_equal(seen, np.bincount(np.asarray(dataset.dataset_index)[:n], minlength=len(seen)))
    # Tokens per dataset (samples x seq_length) follow the planned token shares to within a sample.
    weights = np.asarray([w for w, _ in arm_plan["data_paths"]])
    shares = np.asarray([e["share"] for e in arm_plan["entries"]])
    assert np.allclose(weights, shares)
    assert np.all(np.abs(seen - shares * n) <= 1.0), (seen, shares * n)
    assert len(seen) == 4 and seen.min() > 0


def test_a_finished_run_returns_at_once_and_an_interrupted_one_resumes_from_its_latest_checkpoint(trained, arm_plan):
    out, before = trained["out"], trained["log"]
    weights = out / "iter_0000016" / "hf" / "model.safetensors"
    saved = (weights.read_bytes(), weights.stat().st_mtime_ns)
    assert train_on_plan(arm_plan, out, SETTINGS) == trained["paths"]  # finished: nothing trained again
    assert read_train_log(out) == before
    assert (weights.read_bytes(), weights.stat().st_mtime_ns) == saved

    shutil.rmtree(out / "iter_0000016")  # as if the run had stopped after step 8 was saved
    assert train_on_plan(arm_plan, out, SETTINGS) == trained["paths"]
    after = read_train_log(out)
    assert [r["step"] for r in after] == list(range(1, 17)) and after[:8] == before[:8]
    # Same weights, optimizer state, schedule and samples: the resumed steps repeat the originals.
    for a, b in zip(after[8:], before[8:], strict=True):
        assert a["samples_per_dataset"] == b["samples_per_dataset"] and a["lr"] == pytest.approx(b["lr"])
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-3)

    with pytest.raises(UserError, match="other settings"):
        train_on_plan(
            arm_plan,
            out,
            CpuTrainSettings.from_config(load_config(), steps=30, micro_batch_size=4, save_interval=8, seq_length=128),
        )
    assert json.loads((out / "cpu_train.json").read_text())["settings"]["steps"] == 16
