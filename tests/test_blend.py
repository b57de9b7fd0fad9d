"""`taskseed blend`: plan arithmetic for every sampling control, the emitted formats, clear errors for
impossible plans, and a real megatron-core build of a blend on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from nemo_taskseed.blend import PlanError, PlanSettings, plan_blend
from nemo_taskseed.blend.emit import write_artifacts
from nemo_taskseed.blend.existing import resolve_existing
from nemo_taskseed.blend.fill import water_fill
from nemo_taskseed.blend.settings import FamilyLimits
from nemo_taskseed.blend.sources import ExistingEntry, SyntheticPrefix, load_existing_blend
from nemo_taskseed.config import load_config


def synthetic(name: str, tokens: int, kind: str = "knowledge", family: str | None = None, documents: int = 100):
    family = family or name.split("__")[0]
    return SyntheticPrefix(
        name=name,
        prefix=f"/data/syn/{name}",
        tokens=tokens,
        documents=documents,
        family=family,
        variant=None,
        kind=kind,
        group=kind,
    )


# A neutral mixture for the arithmetic tests: natural sizes, no caps, floors or quotas, every
# variant (configs/base/blend.yaml's paper defaults are tested in test_blend_mixture.py).
NEUTRAL = dict(
    total_tokens=1_000_000,
    seq_length=1000,
    synthetic_share=1.0,
    temperature=1.0,
    max_epochs=None,
    max_share=None,
    min_share=0.0,
    family_overrides={},
    group_quotas={},
    variants="all",
    format_quotas={},
)


def settings(**kw) -> PlanSettings:
    return PlanSettings.from_config(load_config(), **{**NEUTRAL, **kw})


def tokens_by_name(plan: dict) -> dict[str, int]:
    return {e["name"]: e["tokens"] for e in plan["entries"]}


# --- plan arithmetic ------------------------------------------------------------------------------


def test_natural_temperature_follows_family_sizes_and_weights_are_token_shares():
    # Same document count, 1:3 tokens: the weights must follow tokens (GPT samples are token windows).
    plan = plan_blend([synthetic("a", 10_000, documents=50), synthetic("b", 30_000, documents=50)], [], settings())
    assert tokens_by_name(plan) == {"a": 250_000, "b": 750_000}
    assert plan["data_paths"] == [[0.25, "/data/syn/a"], [0.75, "/data/syn/b"]]
    assert plan["total_samples"] == 1000 and plan["seq_length"] == 1000
    assert [e["epochs"] for e in plan["entries"]] == [25.0, 25.0]


def test_temperature_flattens_towards_uniform():
    fams = [synthetic("a", 10_000), synthetic("b", 90_000)]
    t2 = tokens_by_name(plan_blend(fams, [], settings(temperature=2.0)))
    assert t2 == {"a": 250_000, "b": 750_000}  # sqrt(1):sqrt(9) = 1:3
    uniform = tokens_by_name(plan_blend(fams, [], settings(temperature=1e6)))
    assert abs(uniform["a"] - 500_000) <= 10 and sum(uniform.values()) == 1_000_000
    sharp = tokens_by_name(plan_blend(fams, [], settings(temperature=0.5)))
    assert sharp == {"a": 12_195, "b": 987_805}  # 1:81


def test_max_epochs_water_filling():
    fams = [synthetic("a", 10_000), synthetic("b", 30_000), synthetic("c", 60_000)]
    plan = plan_blend(
        fams, [], settings(max_epochs=5.0, total_tokens=400_000, family_overrides={"c": FamilyLimits(max_epochs=None)})
    )
    t = tokens_by_name(plan)
    # natural: a 40k (4 epochs), b 120k (4 epochs), c 240k: under the 5-epoch cap, nothing binds
    assert t == {"a": 40_000, "b": 120_000, "c": 240_000}
    plan = plan_blend(
        fams, [], settings(max_epochs=3.0, total_tokens=400_000, family_overrides={"c": FamilyLimits(max_epochs=None)})
    )
    t = tokens_by_name(plan)
    # caps a 30k, b 90k bind; c takes the remaining 280k
    assert t == {"a": 30_000, "b": 90_000, "c": 280_000}
    bounds = {e["name"]: e["bound"] for e in plan["entries"]}
    assert bounds == {"a": "max_epochs=3", "b": "max_epochs=3", "c": None}
    assert [e["epochs"] for e in plan["entries"]][:2] == [3.0, 3.0]


def test_max_share_caps_and_min_share_floors_small_families():
    fams = [synthetic("small", 1_000), synthetic("mid", 9_000), synthetic("big", 90_000)]
    t = tokens_by_name(plan_blend(fams, [], settings(max_share=0.5)))
    # big is held at half the budget; small and mid split the rest 1:9
    assert t == {"small": 50_000, "mid": 450_000, "big": 500_000}
    t = tokens_by_name(plan_blend(fams, [], settings(min_share=0.05)))
    # natural small = 1% -> lifted to the 5% floor; mid and big share 95% as 9:90
    assert t["small"] == 50_000 and t["mid"] == 86_364 and t["big"] == 863_636


def test_group_quotas_split_the_synthetic_budget_between_knowledge_and_reasoning():
    fams = [
        synthetic("arc", 10_000, "knowledge"),
        synthetic("obqa", 30_000, "knowledge"),
        synthetic("gsm8k", 200_000, "reasoning"),
    ]
    plan = plan_blend(fams, [], settings(group_quotas={"knowledge": 0.6, "reasoning": 0.4}))
    assert tokens_by_name(plan) == {"arc": 150_000, "obqa": 450_000, "gsm8k": 400_000}
    assert plan["groups"]["knowledge"]["share"] == pytest.approx(0.6)
    assert plan["groups"]["reasoning"]["quota"] == 0.4


def test_existing_blend_by_weights_and_by_tokens():
    fams = [synthetic("arc", 10_000), synthetic("gsm8k", 30_000, "reasoning")]
    web = ExistingEntry("web", "/data/pre/web", weight=0.75, tokens=None, where="x: datasets[0] (web)")
    code = ExistingEntry("code", "/data/pre/code", weight=0.25, tokens=None, where="x: datasets[1] (code)")
    plan = plan_blend(fams, [web, code], settings(synthetic_share=0.2), existing_name="pre")
    t = tokens_by_name(plan)
    assert t == {"arc": 50_000, "gsm8k": 150_000, "web": 600_000, "code": 200_000}
    assert sum(t.values()) == plan["total_tokens"]
    assert sum(w for w, _ in plan["data_paths"]) == pytest.approx(1.0, abs=1e-12)
    by_tokens = [
        ExistingEntry("web", "/p/web", None, 3_000_000, "w"),
        ExistingEntry("code", "/p/code", None, 1_000_000, "c"),
    ]
    plan = plan_blend(fams, by_tokens, settings(synthetic_share=0.2))
    t = tokens_by_name(plan)
    assert (t["web"], t["code"]) == (600_000, 200_000)
    assert {e["name"]: e["epochs"] for e in plan["entries"]}["web"] == pytest.approx(0.2)


def test_rounding_keeps_the_budget_exact():
    fams = [synthetic(f"f{i}", 1_000 + 7 * i) for i in range(7)]
    plan = plan_blend(fams, [], settings(total_tokens=1_000_003))
    assert sum(e["tokens"] for e in plan["entries"]) == 1_000_003


def test_water_fill_respects_bounds():
    x = water_fill([1, 1, 1], [0, 0, 0], [10, 100, 100], 150)
    assert x == pytest.approx([10, 70, 70])


# --- impossible plans ----------------------------------------------------------------------------


def test_caps_that_cannot_fill_the_budget_name_the_group_and_families():
    with pytest.raises(PlanError, match=r"group 'all': caps cannot fill the budget.*a <= 40,000 \(max_epochs=4"):
        plan_blend([synthetic("a", 10_000), synthetic("b", 20_000)], [], settings(max_epochs=4.0))


def test_floor_above_cap_names_the_family():
    # A floor set for the family itself that its cap cannot meet is an error naming it ...
    with pytest.raises(PlanError, match=r"family 'tiny': floor min_share=0.1 .* exceeds its cap max_epochs=2"):
        plan_blend(
            [synthetic("tiny", 100), synthetic("big", 10_000_000)],
            [],
            settings(max_epochs=2.0, family_overrides={"tiny": FamilyLimits(max_epochs=2.0, min_share=0.1)}),
        )
    # ... the global floor on a family too small for it gives the family all its cap allows.
    plan = plan_blend(
        [synthetic("tiny", 100), synthetic("big", 10_000_000)], [], settings(min_share=0.1, max_epochs=2.0)
    )
    assert tokens_by_name(plan)["tiny"] == 200 and plan["entries"][1]["bound"] == "max_epochs=2"


def test_existing_weights_that_do_not_sum_to_one():
    entries = [
        ExistingEntry("web", "/p/web", 0.7, None, "b.yaml: datasets[0] (web)"),
        ExistingEntry("code", "/p/code", 0.2, None, "b.yaml: datasets[1] (code)"),
    ]
    with pytest.raises(PlanError, match=r"weights sum to 0.9, not 1 .*web=0.7, code=0.2"):
        plan_blend([synthetic("a", 10_000)], entries, settings(synthetic_share=0.1))
    plan = plan_blend([synthetic("a", 10_000)], entries, settings(synthetic_share=0.1, normalize_existing_weights=True))
    assert tokens_by_name(plan)["web"] == 700_000


def test_zero_token_and_missing_prefix_entries_are_named(tmp_path):
    blend_file = tmp_path / "pre.yaml"
    blend_file.write_text(
        "datasets:\n  - {name: web, prefix: /p/web, weight: 1.0}\n  - {name: empty, prefix: /p/e, tokens: 0}\n"
    )
    with pytest.raises(PlanError, match=r"pre.yaml: datasets\[1\] \(empty\): zero-token dataset"):
        load_existing_blend(str(blend_file))
    blend_file.write_text("datasets:\n  - {name: web, prefix: /nowhere/web_text_document, weight: 1.0}\n")
    _, entries = load_existing_blend(str(blend_file))
    with pytest.raises(PlanError, match=r"datasets\[0\] \(web\): prefix /nowhere/web_text_document does not exist"):
        resolve_existing(entries, settings(synthetic_share=0.5))
    assert resolve_existing(entries, settings(synthetic_share=0.5, require_existing_prefixes=False)) == entries


def test_quota_errors_name_the_group():
    fams = [synthetic("arc", 10_000, "knowledge"), synthetic("gsm8k", 10_000, "reasoning")]
    with pytest.raises(PlanError, match=r"group_quotas sum to 0.9"):
        plan_blend(fams, [], settings(group_quotas={"knowledge": 0.5, "reasoning": 0.4}))
    with pytest.raises(PlanError, match=r"kind 'reasoning' .*gsm8k.* has no quota"):
        plan_blend(fams, [], settings(group_quotas={"knowledge": 1.0}))
    with pytest.raises(PlanError, match=r"unknown famil"):
        plan_blend(fams, [], settings(family_overrides={"mmlu": FamilyLimits(max_epochs=1.0)}))


def test_synthetic_share_below_one_needs_an_existing_blend():
    with pytest.raises(PlanError, match="blend.existing is not set"):
        plan_blend([synthetic("a", 10_000)], [], settings(synthetic_share=0.1))


def test_data_args_file_is_accepted_as_existing_blend(tmp_path):
    path = tmp_path / "pretrain.args"
    path.write_text("0.3 /p/web\n0.7 /p/code\n")
    name, entries = load_existing_blend(str(path))
    assert name == "pretrain" and [(e.name, e.weight) for e in entries] == [("web", 0.3), ("code", 0.7)]
    name, entries = load_existing_blend("example_pretraining")  # shipped under configs/blends/
    assert name == "example-web-code-math" and sum(e.weight for e in entries) == pytest.approx(1.0)


# --- emitted formats -----------------------------------------------------------------------------


def test_every_artifact_round_trips_through_its_consumer(tmp_path):
    from megatron.core.datasets.utils import get_blend_from_list

    fams = [
        synthetic("arc__answer", 10_000, family="arc"),
        synthetic("gsm8k__reasoning", 30_000, "reasoning", family="gsm8k"),
    ]
    existing = [ExistingEntry("web", "/p/web", 1.0, None, "w")]
    plan = plan_blend(fams, existing, settings(synthetic_share=0.3), existing_name="pre")
    written = write_artifacts(plan, tmp_path, valid="train", test=None)
    prefixes = [p for _, p in plan["data_paths"]]
    weights = [w for w, _ in plan["data_paths"]]

    on_disk = json.loads(Path(written["plan"]).read_text())
    assert on_disk["data_paths"] == plan["data_paths"] and on_disk["total_tokens"] == 1_000_000
    # Megatron-LM --data-args-path: read with str.split(), parsed by megatron-core itself.
    blend = get_blend_from_list(Path(written["data_args"]).read_text().split())
    assert blend == (prefixes, weights)
    per_split = json.loads(Path(written["per_split_data_args"]).read_text())
    assert get_blend_from_list(per_split["train"]) == get_blend_from_list(per_split["valid"]) == (prefixes, weights)
    assert per_split["test"] is None
    # Megatron-Bridge: Hydra/OmegaConf-style dot-list overrides.
    overrides = OmegaConf.from_dotlist(Path(written["bridge_overrides"]).read_text().split("\n")[:-1])
    assert OmegaConf.to_container(overrides.dataset.blend) == [prefixes, weights]
    assert overrides.dataset.seq_length == 1000
    nemo2 = json.loads(Path(written["nemo2"]).read_text())
    assert nemo2["paths"] == [x for pair in plan["data_paths"] for x in pair]
    assert set(nemo2["paths_per_split"]) == {"train", "validation"}
    table = Path(written["table"]).read_text()
    assert "| gsm8k__reasoning | synthetic | gsm8k | reasoning | 30k | 225k | 7.5 | 22.5% |  |" in table
    assert Path(written["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- megatron-core on real tokenized data ---------------------------------------------------------


@pytest.fixture(scope="module")
def tokenized_world(tmp_path_factory, fixtures_hf, model_dir):
    """Synthetic prefixes from fixture rows plus two local 'pretraining' prefixes (code, science text)."""
    from test_tokenize import tokenize_fixture_documents, write_jsonl

    from nemo_taskseed.tokenize import TokenizeOptions, tokenize_files

    root = tmp_path_factory.mktemp("blendworld")
    tokenize_fixture_documents(root, fixtures_hf, model_dir)
    pretrain = []
    with open(fixtures_hf / "google-research-datasets/mbpp/full/train.jsonl") as handle:
        pretrain += [{"text": json.loads(line)["code"], "family": "code"} for line in handle]
    with open(fixtures_hf / "allenai/openbookqa/main/train.jsonl") as handle:
        pretrain += [{"text": " ".join(json.loads(line)["choices"]["text"]), "family": "science"} for line in handle]
    write_jsonl(root / "pretrain.jsonl", pretrain)
    tokenize_files(
        [root / "pretrain.jsonl"],
        root / "pre",
        TokenizeOptions.from_config(load_config(), str(model_dir), group_by=("family",), progress=False),
    )
    (root / "existing.yaml").write_text(
        f"name: local-pretraining\ndatasets:\n  - {{name: code, prefix: {root / 'pre' / 'code'}, weight: 0.6}}\n"
        f"  - {{name: science, prefix: {root / 'pre' / 'science'}, weight: 0.4}}\n"
    )
    return root


def _cfg(root: Path, *extra: str):
    return load_config(
        None,
        [
            f"blend.manifest={root / 'tok'}",
            f"blend.existing={root / 'existing.yaml'}",
            "blend.total_tokens=2000000",
            "blend.seq_length=256",
            "blend.synthetic_share=0.25",
            "blend.max_epochs=200",
            "blend.group_quotas.knowledge=0.5",
            "blend.group_quotas.reasoning=0.5",
            "blend.plot=false",
            *extra,
        ],
    )


def test_real_megatron_build_realizes_the_planned_token_shares(tokenized_world):
    from nemo_taskseed.blend import plan_from_config, verify_from_config
    from nemo_taskseed.blend.verify import blending_index_counts, build_megatron_blend

    cfg = _cfg(tokenized_world)
    plan = plan_from_config(cfg.blend)
    names = [e["name"] for e in plan["entries"]]
    assert names == [
        "arc_easy__answer",
        "arc_easy__label",
        "commonsense_qa__all",
        "gsm8k__reasoning",
        "code",
        "science",
    ]
    pre = {e["name"]: e for e in plan["entries"] if e["source"] == "pretraining"}
    assert pre["code"]["tokens"] == 900_000 and pre["code"]["available_tokens"] > 0  # read from its .idx
    assert plan["total_samples"] == 7813

    report = verify_from_config(plan, cfg.blend)
    assert report["ok"], report
    assert report["build"]["samples"] == report["indices"]["samples"] >= plan["total_samples"]
    for row in report["build"]["rows"]:
        assert abs(row["realized_share"] - row["planned_share"]) <= 1 / report["build"]["samples"] + 1e-12

    # The full-scale check replays exactly what BlendedMegatronDatasetBuilder did.
    dataset = build_megatron_blend(plan, plan["tokenizer"]["path"], plan["total_samples"])
    counts, size, _ = blending_index_counts([w for w, _ in plan["data_paths"]], plan["total_samples"])
    assert len(dataset) == size
    assert np.array_equal(np.bincount(dataset.dataset_index, minlength=len(names)), counts)
    # A sample of a synthetic dataset holds that dataset's tokens.
    first_gsm8k = int(np.flatnonzero(dataset.dataset_index == names.index("gsm8k__reasoning"))[0])
    from nemo_taskseed.tokenize.encoder import load_hf_tokenizer

    text = load_hf_tokenizer(plan["tokenizer"]["path"]).decode(dataset[first_gsm8k]["tokens"].tolist())
    assert "Question:" in text or "Answer:" in text or "<<" in text


def test_verify_fails_beyond_tolerance_and_names_the_dataset(tokenized_world):
    from nemo_taskseed.blend import plan_from_config, verify_from_config
    from nemo_taskseed.blend.verify import failures

    cfg = _cfg(tokenized_world, "blend.verify.build=never")
    plan = plan_from_config(cfg.blend)
    plan["entries"][0]["share"] += 0.01  # what the plan promised no longer matches the weights
    report = verify_from_config(plan, cfg.blend)
    assert not report["ok"] and report["build"] is None
    assert [f.split(" realized")[0] for f in failures(report)] == ["indices: arc_easy__answer"]


def test_cli_plan_verify_and_run_step(tokenized_world, tmp_path, capsys):
    from nemo_taskseed.blend.step import run_step
    from nemo_taskseed.cli import main

    root = tokenized_world
    sets = ["blend.total_tokens=2000000", "blend.seq_length=256", "blend.max_epochs=200"]
    assert (
        main(
            [
                "blend",
                "plan",
                "--manifest",
                str(root / "tok"),
                "--out",
                str(tmp_path / "plan"),
                "--existing",
                str(root / "existing.yaml"),
                "--synthetic-share",
                "0.25",
                *sets,
            ]
        )
        == 0
    )
    assert main(["blend", "verify", str(tmp_path / "plan"), "--build", "never"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "plan.png" in out
    assert json.loads((tmp_path / "plan" / "verify.json").read_text())["indices"]["ok"]
    # A planned prefix missing on this machine fails the default check (it used to skip the build
    # and print OK); --build never checks the indices alone.
    moved = json.loads((tmp_path / "plan" / "plan.json").read_text())
    moved["data_paths"][0][1] = str(tmp_path / "elsewhere" / "code")
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / "plan.json").write_text(json.dumps(moved))
    assert main(["blend", "verify", str(tmp_path / "moved")]) == 2
    err = capsys.readouterr().err
    assert f"e.g. {tmp_path / 'elsewhere' / 'code'}.bin/.idx" in err and "--build never" in err
    assert main(["blend", "verify", str(tmp_path / "moved"), "--build", "never"]) == 0
    capsys.readouterr()
    # An impossible plan is a user error (exit 2) that names the group.
    assert (
        main(
            [
                "blend",
                "plan",
                "--manifest",
                str(root / "tok"),
                "--out",
                str(tmp_path / "bad"),
                "--synthetic-share",
                "1",
                "blend.total_tokens=100000000000",
            ]
        )
        == 2
    )
    assert "caps cannot fill the budget" in capsys.readouterr().err

    cfg = _cfg(root, "blend.verify.build=never")
    summary = run_step(cfg, root / "tok", tmp_path / "step")
    assert summary["datasets"] == 6 and summary["synthetic_datasets"] == 4
    # Knowledge is all multiple choice here and reasoning all generative: at 1:1 kinds the default
    # 60:40 format ratio cannot hold, and the summary (printed by `taskseed run`) says what was planned.
    [warning] = summary["warnings"]
    assert warning.startswith("blend.format_quotas relaxed") and "multiple_choice 50.00% / generative 50.00%" in warning
    assert summary["verified_samples"] >= summary["total_samples"] == 7813
    assert {
        "plan.json",
        "data_args.txt",
        "per_split_data_args.json",
        "bridge_overrides.txt",
        "nemo2_datamodule.json",
        "plan.md",
    } <= set(summary["artifacts"])
