"""The default mixture (configs/base/blend.yaml) on a skewed manifest: family caps, floors,
knowledge/reasoning quotas, one variant per item and the multiple-choice : generative ratio; the
ratio also on real tokenize outputs of the default grouping (family, variant), whose prefixes
count their tokens per format."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from nemo_taskseed.blend import PlanError, PlanSettings, plan_blend
from nemo_taskseed.blend.sources import SyntheticPrefix
from nemo_taskseed.config import load_config

VARIANTS = ("label", "answer", "reasoning", "context")
# family: (kind, {format: tokens per variant}). gsm8k is 20x the next family: the skew.
SKEWED = {
    "arc": ("knowledge", {"multiple_choice": 3_000_000}),
    "mmlu": ("knowledge", {"multiple_choice": 8_000_000, "generative": 2_000_000}),
    "sciq": ("knowledge", {"multiple_choice": 200_000}),
    "triviaqa": ("knowledge", {"generative": 5_000_000}),
    "nq_open": ("knowledge", {"generative": 40_000}),
    "medmcqa": ("knowledge", {"multiple_choice": 4_000_000}),
    "openbookqa": ("knowledge", {"multiple_choice": 100_000}),
    "truthfulqa": ("knowledge", {"multiple_choice": 30_000, "generative": 30_000}),
    "ceval": ("knowledge", {"multiple_choice": 5_000_000}),
    "headqa": ("knowledge", {"multiple_choice": 3_000_000}),
    "aexams": ("knowledge", {"multiple_choice": 2_000_000}),
    "webqs": ("knowledge", {"generative": 4_000_000}),
    "gsm8k": ("reasoning", {"generative": 400_000_000}),
    "hellaswag": ("reasoning", {"multiple_choice": 20_000_000}),
    "piqa": ("reasoning", {"multiple_choice": 1_000_000}),
    "winogrande": ("reasoning", {"multiple_choice": 500_000}),
    "hendrycks_math": ("reasoning", {"generative": 6_000_000}),
    "xnli": ("reasoning", {"multiple_choice": 3_000_000}),
    "drop": ("reasoning", {"generative": 2_000_000}),
    "mbpp": ("reasoning", {"generative": 50_000}),
}


def skewed_manifest(with_format: bool = True) -> list[SyntheticPrefix]:
    out = []
    for family, (kind, formats) in SKEWED.items():
        for fmt, tokens in formats.items():
            for variant in VARIANTS:
                name = f"{family}__{fmt}__{variant}" if with_format else f"{family}__{variant}__{fmt}"
                out.append(
                    SyntheticPrefix(
                        name=name,
                        prefix=f"/data/syn/{name}",
                        tokens=tokens,
                        documents=tokens // 200,
                        family=family,
                        variant=variant,
                        kind=kind,
                        group=kind,
                        format=fmt if with_format else None,
                    )
                )
    return out


def default_settings(**kw) -> PlanSettings:
    settings = PlanSettings.from_config(load_config().blend)
    settings.synthetic_share = 1.0  # synthetic only: shares below are of the synthetic budget
    settings.total_tokens = 20_000_000
    for k, v in kw.items():
        setattr(settings, k, v)
    return settings


def shares(plan: dict, key: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for e in plan["entries"]:
        out[e[key]] += e["tokens"] / plan["synthetic_tokens"]
    return dict(out)


def test_defaults_document_the_paper_mixture():
    s = PlanSettings.from_config(load_config().blend)
    assert s.max_share == 0.10 and s.min_share == 0.005 and s.variants == "one_per_item"
    assert s.group_quotas == pytest.approx({"knowledge": 2 / 3, "reasoning": 1 / 3}, abs=1e-6)
    assert s.format_quotas == {"multiple_choice": 0.6, "generative": 0.4} and s.synthetic_share == 0.02


def test_default_mixture_on_a_skewed_manifest_caps_families_and_meets_quotas():
    settings = default_settings()
    plan = plan_blend(skewed_manifest(), [], settings)
    budget = plan["synthetic_tokens"]
    assert budget == 20_000_000
    family = shares(plan, "family")
    # gsm8k alone is 85% of the tokens; no family gets more than max_share.
    natural = 4 * 400_000_000 / sum(4 * t for _, f in SKEWED.values() for t in f.values())
    assert natural > 0.85
    assert max(family.values()) <= 0.10 + 1e-6, family
    assert family["gsm8k"] == pytest.approx(0.10, abs=1e-6)
    # Floors: every family gets min_share, or all that max_epochs allows over its distinct items.
    for name, (_, formats) in SKEWED.items():
        items = sum(formats.values())  # one variant's worth: the family's distinct content
        assert family[name] * budget >= min(0.005 * budget, 4 * items) - 4, name
        assert family[name] * budget <= 4 * items + 4, name  # max_epochs over items, variants together
    # Quotas: knowledge 2/3, reasoning 1/3; multiple-choice 60%, generative 40%.
    kind = shares(plan, "kind")
    assert kind["knowledge"] == pytest.approx(2 / 3, abs=1e-4) and kind["reasoning"] == pytest.approx(1 / 3, abs=1e-4)
    fmt = shares(plan, "format")
    assert fmt["multiple_choice"] == pytest.approx(0.6, abs=1e-4) and fmt["generative"] == pytest.approx(0.4, abs=1e-4)
    # One variant per item: a family's variants are sampled alike and together pass over its items
    # as often as one variant would (item_epochs), not four times as often.
    arc = [e for e in plan["entries"] if e["family"] == "arc"]
    assert len({e["tokens"] for e in arc}) == 1
    assert plan["families"]["arc/multiple_choice"]["item_epochs"] == pytest.approx(
        4 * plan["families"]["arc/multiple_choice"]["epochs"]
    )
    assert plan["notes"] == []
    assert not any("raised" in (e["bound"] or "") for e in plan["entries"])


def test_a_group_too_small_for_max_share_raises_it_just_enough_and_says_so():
    small = [p for p in skewed_manifest(with_format=False) if p.family not in ("ceval", "headqa", "aexams", "webqs")]
    plan = plan_blend(small, [], default_settings(format_quotas={}))
    family = shares(plan, "family")
    knowledge = {f: v for f, v in family.items() if SKEWED[f][0] == "knowledge"}
    assert sum(knowledge.values()) == pytest.approx(2 / 3, abs=1e-4)
    raised = {e["bound"] for e in plan["entries"] if e["bound"] and "raised" in e["bound"]}
    assert raised and all("raised from 0.1" in b for b in raised)
    # The big knowledge families end level at the raised cap, and no higher than it.
    level = max(knowledge.values())
    assert 0.10 < level < 0.2 and sum(abs(v - level) < 1e-6 for v in knowledge.values()) >= 3


def test_variants_all_weighs_each_variant_and_weights_pick_variants():
    base = [p for p in skewed_manifest(with_format=False)]
    one = plan_blend(base, [], default_settings())
    weighted = plan_blend(base, [], default_settings(format_quotas={}, variants={"answer": 1.0, "reasoning": 3.0}))
    by_variant = shares(weighted, "variant")
    assert by_variant["reasoning"] == pytest.approx(0.75, abs=1e-3) and "label" not in by_variant
    assert any("have no weight in blend.variants" in n for n in weighted["notes"])
    # Without tokens per format (an older manifest, not grouped by format) the ratio is skipped,
    # and the plan says so.
    assert one["formats"]["status"] == "skipped" and one["formats"]["shares"] is None
    assert any("format_quotas not applied" in w and "re-run `taskseed tokenize`" in w for w in one["warnings"])
    assert shares(one, "kind")["knowledge"] == pytest.approx(2 / 3, abs=1e-4)


def test_mixture_errors_name_the_key():
    with pytest.raises(PlanError, match="blend.variants"):
        PlanSettings.from_config(load_config(overrides=["blend.variants=each"]).blend)
    with pytest.raises(PlanError, match="blend.format_quotas sum to 0.9"):
        PlanSettings.from_config(load_config(overrides=["blend.format_quotas.generative=0.3"]).blend)


def test_format_quotas_reject_an_unknown_format():
    with pytest.raises(PlanError, match=r"unknown format\(s\) \['mc'\]"):
        default_settings(format_quotas={"mc": 0.6, "generative": 0.4}).check()


# --- real tokenize outputs, default grouping (family, variant) ------------------------------------


def _rows(fixtures_hf: Path, rel: str) -> list[dict]:
    with open(fixtures_hf / rel) as handle:
        return [json.loads(line) for line in handle]


def _mc(row: dict, question: str, answer_key: bool = False) -> str:
    from test_tokenize import _mc_text

    labels, options = row["choices"]["label"], row["choices"]["text"]
    answer = row["answerKey"] if answer_key else options[labels.index(row["answerKey"])]
    return _mc_text(question, labels, options, answer)


def _answer(row: dict) -> str:
    return row["choices"]["text"][row["choices"]["label"].index(row["answerKey"])]


def many_family_documents(fixtures_hf: Path) -> list[dict]:
    """Real benchmark rows as 16 capability families, so that max_share 0.10 leaves the default
    mixture room (at least 7 knowledge and 4 reasoning families are needed just to fill the kinds).

    knowledge: arc_0..5 (ARC-Easy; `label` multiple choice, `answer` half multiple choice and half
    generative: a mixed prefix), obqa_0..3 (OpenBookQA, generative); reasoning: csqa_0..2
    (CommonsenseQA, multiple choice), gsm8k_0..1 and mbpp (generative).
    """
    docs = []
    for i, row in enumerate(_rows(fixtures_hf, "allenai/ai2_arc/ARC-Easy/train.jsonl")):
        base = {"family": f"arc_{i % 6}", "kind": "knowledge"}
        docs.append({**base, "format": "multiple_choice", "variant": "label", "text": _mc(row, row["question"], True)})
        if (i // 6) % 2:
            docs.append({**base, "format": "multiple_choice", "variant": "answer", "text": _mc(row, row["question"])})
        else:
            text = f"Question: {row['question']}\nAnswer: {_answer(row)}"
            docs.append({**base, "format": "generative", "variant": "answer", "text": text})
    for i, row in enumerate(_rows(fixtures_hf, "allenai/openbookqa/main/train.jsonl")):
        text = f"Question: {row['question_stem']}\nAnswer: {_answer(row)}"
        docs.append(
            {"family": f"obqa_{i % 4}", "kind": "knowledge", "format": "generative", "variant": "answer", "text": text}
        )
    for i, row in enumerate(_rows(fixtures_hf, "tau/commonsense_qa/default/train.jsonl")):
        text = _mc(row, row["question"])
        docs.append(
            {
                "family": f"csqa_{i % 3}",
                "kind": "reasoning",
                "format": "multiple_choice",
                "variant": "answer",
                "text": text,
            }
        )
    for i, row in enumerate(_rows(fixtures_hf, "openai/gsm8k/main/train.jsonl")):
        text = f"Question: {row['question']}\nAnswer: {row['answer']}"
        docs.append(
            {
                "family": f"gsm8k_{i % 2}",
                "kind": "reasoning",
                "format": "generative",
                "variant": "reasoning",
                "text": text,
            }
        )
    for row in _rows(fixtures_hf, "google-research-datasets/mbpp/full/train.jsonl"):
        text = f"{row['text']}\n{row['code']}"
        docs.append({"family": "mbpp", "kind": "reasoning", "format": "generative", "variant": "answer", "text": text})
    return docs


@pytest.fixture(scope="module")
def real_manifests(tmp_path_factory, fixtures_hf, model_dir):
    """Two tokenize outputs with the default settings (group_by [family, variant]):
    `many`: 16 families, some prefixes mixing formats; `one_format_per_kind`: knowledge all
    multiple choice (ARC-Easy, CommonsenseQA), reasoning all generative (GSM8K)."""
    from test_tokenize import fixture_documents, write_jsonl

    from nemo_taskseed.tokenize.step import tokenize_inputs

    root = tmp_path_factory.mktemp("formats")
    section = load_config(None, [f"tokenize.tokenizer={model_dir}", "tokenize.progress=false"]).tokenize
    assert list(section.group_by) == ["family", "variant"]  # the default grouping: no format in it
    for name, docs in (
        ("many", many_family_documents(fixtures_hf)),
        ("one_format_per_kind", fixture_documents(fixtures_hf, per_source=60)),
    ):
        write_jsonl(root / f"{name}.jsonl", docs)
        tokenize_inputs(section, root / name, files=[root / f"{name}.jsonl"], run_executor="inline")
    return root


def _real_plan(manifest: Path, total_tokens: int) -> dict:
    from nemo_taskseed.blend import plan_from_config

    # Everything else is configs/base/blend.yaml: 2:1 kinds, 60:40 formats, caps, floors, one_per_item.
    overrides = [f"blend.manifest={manifest}", f"blend.total_tokens={total_tokens}", "blend.seq_length=256"]
    return plan_from_config(load_config(None, overrides).blend)


def _measured_shares(plan: dict, manifest: Path) -> tuple[dict[str, float], dict[str, float]]:
    """(format, kind) shares of the planned synthetic tokens, from the plan's integer tokens and
    the manifest's own per-prefix counts (not from the plan's summary)."""
    prefixes = {p["path"]: p for p in json.loads((manifest / "manifest.json").read_text())["prefixes"]}
    formats: dict[str, float] = defaultdict(float)
    kinds: dict[str, float] = defaultdict(float)
    total = plan["synthetic_tokens"]
    for entry in plan["entries"]:
        prefix = prefixes[Path(entry["prefix"]).name]
        for fmt, tokens in prefix["format_tokens"].items():
            formats[fmt] += entry["tokens"] * tokens / prefix["tokens"] / total
        kinds[prefix["kind"]] += entry["tokens"] / total
    return dict(formats), dict(kinds)


def test_default_pipeline_plan_meets_60_40_with_mixed_prefixes(real_manifests):
    manifest = real_manifests / "many"
    prefixes = {p["name"]: p for p in json.loads((manifest / "manifest.json").read_text())["prefixes"]}
    mixed = prefixes["arc_0__answer"]
    assert mixed["format"] == "mixed" and set(mixed["format_tokens"]) == {"multiple_choice", "generative"}
    assert prefixes["arc_0__label"]["format_tokens"] == {"multiple_choice": prefixes["arc_0__label"]["tokens"]}

    plan = _real_plan(manifest, 40_000)
    formats, kinds = _measured_shares(plan, manifest)
    # Measured on the rounded plan (40,000 tokens over 22 prefixes): 59.998% multiple choice.
    assert formats["multiple_choice"] == pytest.approx(0.6, abs=2e-4) and sum(formats.values()) == pytest.approx(1.0)
    assert kinds["knowledge"] == pytest.approx(2 / 3, abs=2e-4) and kinds["reasoning"] == pytest.approx(1 / 3, abs=2e-4)
    report = plan["formats"]
    assert report["status"] == "met" and report["shares"] == pytest.approx(formats, abs=1e-9)
    low, high = report["feasible"]["multiple_choice"]
    assert low < 0.6 < high
    assert plan["warnings"] == [] and not any("raised" in (e["bound"] or "") for e in plan["entries"])
    # The caps still hold: no family above max_share, none beyond 4 passes over its items.
    for name, fam in plan["families"].items():
        assert fam["share_of_synthetic"] <= 0.10 + 1e-9 and fam["item_epochs"] <= 4 + 1e-9, name
    # A mixed prefix is sampled as one: its multiple-choice and generative tokens go together.
    entry = next(e for e in plan["entries"] if e["name"] == "arc_0__answer")
    assert entry["format"] == "mixed" and entry["format_shares"]["generative"] == pytest.approx(
        mixed["format_tokens"]["generative"] / mixed["tokens"]
    )
    # Without the quota the same data mixes further from 60:40 (the quota did the work).
    from nemo_taskseed.blend import plan_from_config

    free = plan_from_config(
        load_config(None, [f"blend.manifest={manifest}", "blend.total_tokens=40000", "blend.format_quotas=null"]).blend
    )
    assert free["formats"]["status"] == "off" and abs(free["formats"]["shares"]["multiple_choice"] - 0.6) > 0.02


def test_infeasible_format_quota_is_relaxed_to_the_closest_ratio_and_reported(real_manifests, tmp_path):
    from nemo_taskseed.blend.emit import markdown_table

    manifest = real_manifests / "one_format_per_kind"
    plan = _real_plan(manifest, 10_000)
    formats, kinds = _measured_shares(plan, manifest)
    # Knowledge is all multiple choice: with 2:1 kinds, multiple choice is 2/3 whatever the weights.
    # The kind quotas hold; the format ratio is the one relaxed, to the closest it can be.
    assert kinds["knowledge"] == pytest.approx(2 / 3, abs=2e-4)
    assert formats["multiple_choice"] == pytest.approx(2 / 3, abs=2e-4)
    report = plan["formats"]
    assert report["status"] == "relaxed" and report["shares"]["multiple_choice"] == pytest.approx(2 / 3, abs=2e-4)
    assert report["feasible"]["multiple_choice"] == pytest.approx([2 / 3, 2 / 3], abs=1e-6)
    assert report["feasible_by_group"] == {
        "knowledge": {"multiple_choice": pytest.approx([1.0, 1.0])},
        "reasoning": {"multiple_choice": pytest.approx([0.0, 0.0])},
    }
    [warning] = plan["warnings"]
    assert warning.startswith("blend.format_quotas relaxed: multiple_choice 0.6 / generative 0.4 cannot hold")
    assert "knowledge 100.00%-100.00%, reasoning 0.00%-0.00%" in warning
    assert "Planned the closest: multiple_choice 66.67% / generative 33.33%" in warning
    assert f"**Warning:** {warning}" in markdown_table(plan)


def test_a_manifest_without_format_counts_still_plans_and_says_why_the_ratio_is_skipped(real_manifests, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(real_manifests / "one_format_per_kind", old)
    manifest = json.loads((old / "manifest.json").read_text())
    for entry in manifest["prefixes"]:  # as tokenize wrote it before it counted formats
        del entry["format_tokens"], entry["format"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    plan = _real_plan(old, 10_000)
    assert plan["formats"]["status"] == "skipped" and plan["formats"]["shares"] is None
    [warning] = plan["warnings"]
    assert warning.startswith("blend.format_quotas not applied: the tokenize manifest records no tokens per format")
    assert "re-run `taskseed tokenize`" in warning
    assert plan["groups"]["knowledge"]["share"] == pytest.approx(2 / 3, abs=2e-4)
