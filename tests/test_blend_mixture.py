"""The default mixture (configs/base/blend.yaml) on a skewed manifest: family caps, floors,
knowledge/reasoning quotas, one variant per item and the multiple-choice : generative ratio."""

from __future__ import annotations

from collections import defaultdict

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
    # Without a format grouping the ratio is skipped, and the plan says so.
    assert any("format_quotas not applied" in n for n in one["notes"])
    assert shares(one, "kind")["knowledge"] == pytest.approx(2 / 3, abs=1e-4)


def test_mixture_errors_name_the_key():
    with pytest.raises(PlanError, match="blend.variants"):
        PlanSettings.from_config(load_config(overrides=["blend.variants=each"]).blend)
    with pytest.raises(PlanError, match="blend.format_quotas sum to 0.9"):
        PlanSettings.from_config(load_config(overrides=["blend.format_quotas.generative=0.3"]).blend)
