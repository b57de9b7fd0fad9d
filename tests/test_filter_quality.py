"""Rule checks of filter.quality: what they catch, and what they leave alone on real benchmark rows.

The false-positive side is measured on the real rows in ../shared/fixtures/hf (1,300 rows of
GSM8K, ARC, CommonsenseQA, OpenBookQA, MMLU): every flag there must be a real defect of the row (two
identical options, a false calculation), checked independently here. The pipeline side (planted
flawed items among real rows, per-variant verdicts) is in test_filter_pipeline.py.
"""

from __future__ import annotations

import copy
import functools
from fractions import Fraction

import pytest
from test_filter_fixtures import fixture_rows, gsm8k_fields, mc_fields

from nemo_taskseed.config import load_config, to_container
from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.quality import (
    ExplanationSettings,
    build_checks,
    explanation_failures,
    item_failures,
    text_failures,
)
from nemo_taskseed.filter.quality.explanation import picked_option
from nemo_taskseed.filter.quality.items import wrong_calculations
from nemo_taskseed.registry.extractors import normalize_short_answer

REAL = [  # (dataset, config, split, converter, family, format)
    ("openai/gsm8k", "main", "train", gsm8k_fields, "gsm8k", "generative"),
    ("openai/gsm8k", "main", "test", gsm8k_fields, "gsm8k", "generative"),
    ("allenai/ai2_arc", "ARC-Easy", "train", mc_fields, "arc", "multiple_choice"),
    ("allenai/ai2_arc", "ARC-Easy", "test", mc_fields, "arc", "multiple_choice"),
    ("allenai/ai2_arc", "ARC-Challenge", "test", mc_fields, "arc", "multiple_choice"),
    ("allenai/openbookqa", "main", "train", mc_fields, "openbookqa", "multiple_choice"),
    ("tau/commonsense_qa", "default", "train", mc_fields, "commonsense_qa", "multiple_choice"),
    ("tau/commonsense_qa", "default", "validation", mc_fields, "commonsense_qa", "multiple_choice"),
    ("cais/mmlu", "anatomy", "test", mc_fields, "mmlu", "multiple_choice"),
]


@pytest.fixture(scope="module")
def real_items(fixtures_hf):
    items = []
    for dataset, config, split, convert, family, fmt in REAL:
        for row in fixture_rows(fixtures_hf, dataset, config, split):
            items.append({"family": family, "format": fmt, "context": None, **convert(row)})
    return items


@pytest.fixture(scope="module")
def quality_config():
    return to_container(load_config())["filter"]["quality"]


def _python_value(expression: str) -> float:
    """An independent evaluation of a written calculation (Python's own arithmetic)."""
    clean = expression.replace("$", "").replace(",", "").replace("×", "*").replace("÷", "/")
    clean = clean.replace(" x ", " * ")
    return eval(compile(clean, "<calc>", "eval"), {"__builtins__": {}})  # digits and + - * / only


def test_item_rules_flag_only_real_defects_of_real_benchmark_rows(real_items):
    flagged = [(item, f) for item in real_items for f in item_failures(item)]
    for item, failure in flagged:
        if failure["check"] == "options_duplicate":
            a, b = (item["options"][i] for i in failure["options"])
            assert normalize_short_answer(a) == normalize_short_answer(b), (a, b)
        elif failure["check"] == "arithmetic_wrong":
            for calc in failure["calculations"]:
                lhs, rhs = calc.strip("<>").rstrip(",. \n").split("=")
                assert abs(_python_value(lhs) - float(Fraction(rhs.replace("$", "").replace(",", "")))) > 0.01, calc
        else:
            pytest.fail(f"unexpected flag on a real benchmark row: {failure} ({item['question'][:80]})")
    # Measured: 11 of 1,300 rows, all real defects: 8 CommonsenseQA rows list one option twice,
    # 3 GSM8K training solutions contain a false calculation (e.g. "6*2.5 = $18.00").
    assert len({id(item) for item, _ in flagged}) <= 0.015 * len(real_items)
    assert {f["check"] for _, f in flagged} == {"options_duplicate", "arithmetic_wrong"}


def test_text_checks_pass_real_benchmark_items(real_items, quality_config):
    checks = build_checks(quality_config["checks"])
    failing = [
        (item["question"][:60], f["check"], f["where"]) for item in real_items for f in text_failures(item, checks)
    ]
    # Real questions and options are not what these checks are for: at most a handful of rows.
    assert len(failing) <= 0.01 * len(real_items), failing[:10]


def _mc_item():
    return {
        "family": "arc",
        "format": "multiple_choice",
        "question": "Which gas do plants take in from the air to make food?",
        "options": ["oxygen", "carbon dioxide", "nitrogen", "helium"],
        "answer_index": 1,
        "answer_text": "carbon dioxide",
        "context": None,
        "reference": None,
        "enrichment": {
            "reasoning": "Photosynthesis combines water with a gas from the air, using sunlight, to build sugar. "
            "That gas is carbon dioxide, so the answer is B.",
            "alternatives": [
                {"option": "A", "why_wrong": "Oxygen is released by photosynthesis as a product, not taken in for it."},
                {
                    "option": "C",
                    "why_wrong": "Nitrogen reaches plants through the soil as nitrates, not from the leaves.",
                },
                {"option": "D", "why_wrong": "Helium is an inert noble gas that living things never use."},
            ],
            "knowledge": "Photosynthesis in chloroplasts turns light energy into chemical energy stored in glucose.",
        },
    }


@functools.cache
def _explanation_settings() -> ExplanationSettings:
    return ExplanationSettings.from_config(load_config())  # configs/base/filter.yaml


def _explanation(record):
    return [f["check"] for f in explanation_failures(record, _explanation_settings())]


def test_a_consistent_enrichment_passes_every_check(quality_config):
    item = _mc_item()
    assert _explanation(item) == []
    assert item_failures(item) == []
    assert text_failures(item, build_checks(quality_config["checks"])) == []


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda e: e.update(reasoning="Plants breathe like animals do. So the answer is A."),
            "reasoning_concludes_other_option",
        ),
        (lambda e: e.update(reasoning="Plants take in oxygen from the air."), "reasoning_concludes_other_option"),
        (lambda e: e["alternatives"].pop(), "alternatives_missing"),
        (
            lambda e: e["alternatives"].append(
                {"option": "B", "why_wrong": "Carbon dioxide is not a gas found in air at all."}
            ),
            "alternative_for_correct_option",
        ),
        (lambda e: e["alternatives"][0].update(why_wrong="The answer is A. oxygen"), "alternative_restates_option"),
        (lambda e: e["alternatives"][2].update(why_wrong=e["alternatives"][1]["why_wrong"]), "alternatives_repeat"),
        (
            lambda e: e.update(knowledge="Plants take in carbon dioxide from the air to make food."),
            "knowledge_restates_item",
        ),
        (lambda e: e.update(knowledge="B"), "knowledge_restates_item"),
    ],
)
def test_each_inconsistent_enrichment_is_named(edit, expected):
    item = copy.deepcopy(_mc_item())
    edit(item["enrichment"])
    assert expected in _explanation(item)


def test_math_reasoning_must_reach_the_items_answer():
    item = {
        "family": "gsm8k",
        "format": "generative",
        "question": "Sara saves $4 every week. How much in 52 weeks?",
        "options": None,
        "answer_index": None,
        "answer_text": "208",
        "reference": "4 * 52 = <<4*52=208>>208\n#### 208",
        "enrichment": {
            "reasoning": "She saves 4 dollars for each of 52 weeks: 4 * 52 = 208.",
            "alternatives": [{"option": "56", "why_wrong": "Adding 4 and 52 instead of multiplying them."}],
            "knowledge": "Repeated equal additions over time are computed by multiplication.",
        },
    }
    assert _explanation(item) == [] and item_failures(item) == []
    wrong = copy.deepcopy(item)
    wrong["enrichment"]["reasoning"] = "She saves 4 dollars for each of 52 weeks: 4 * 52 = 200."
    assert _explanation(wrong) == ["reasoning_concludes_other_answer", "reasoning_arithmetic_wrong"]
    vague = copy.deepcopy(item)
    vague["enrichment"]["reasoning"] = "The step-by-step reasoning that leads to the correct answer."
    assert _explanation(vague) == ["reasoning_misses_answer"]
    no_number = dict(item, answer_text="The total cost of the ball and the bat")
    assert [f["check"] for f in item_failures(no_number)] == ["math_answer_not_a_number"]


def test_item_rules_catch_duplicate_options_and_restated_answers():
    item = _mc_item()
    assert [
        f["check"] for f in item_failures(dict(item, options=["oxygen", "carbon dioxide", "Oxygen.", "helium"]))
    ] == ["options_duplicate"]
    # Orderings are different answers, not duplicates.
    order = dict(
        item,
        options=["egg, larva, adult", "larva, egg, adult", "adult, egg, larva", "egg, adult, larva"],
        answer_index=0,
    )
    assert item_failures(order) == []
    restated = dict(
        item,
        question="The animal that can't speak is the whale.",
        options=["The whale is the animal that can't speak.", "kangaroo", "parrot", "dolphin"],
        answer_index=0,
    )
    assert [f["check"] for f in item_failures(restated)] == ["answer_in_question"]


@pytest.mark.parametrize(
    "text, wrong",
    [
        ("48/6 = <<48/6=8>>8 boxes", []),
        ("2.5 * 6 = <<2.6>>3 muffins", ["2.5 * 6 = 3"]),
        ("She runs 110 - 60 - 15 = 35 miles", []),
        ("so .10*60 = $6.00 off", []),
        ("then 10/3 = 3.33 each", []),  # rounded as written
        ("eat 1 1/2 rolls each, 8 x 1 1/2 = 12 rolls", []),  # a mixed number: not a whole calculation
        ("There are 60 students x 2/3 = 40 students", []),
        ("So it cost 192*100=$1920\n", ["192*100=$1920"]),
    ],
)
def test_written_calculations_are_checked(text, wrong):
    assert list(wrong_calculations(text)) == wrong


def test_the_picked_option_is_the_last_one_stated():
    options = ["oxygen", "carbon dioxide", "nitrogen"]
    assert picked_option("Not A, since plants release oxygen; the answer is B.", options) == 1
    assert picked_option("B. Carbon dioxide is what leaves absorb.", options) == 1
    assert picked_option("Leaves absorb nitrogen.", options) == 2
    assert picked_option("Leaves absorb gases.", options) is None


def test_text_checks_name_filter_and_field_and_skip_unspaced_scripts(quality_config):
    checks = build_checks(quality_config["checks"])
    item = _mc_item()
    item["enrichment"]["reasoning"] = "Plants need light to make their own food. " * 15 + "So the answer is B."
    item["enrichment"]["alternatives"][1]["why_wrong"] = "..."
    got = {(f["check"], f["where"]) for f in text_failures(item, checks)}
    assert ("repeating_dup_4gram", "reasoning") in got
    assert ("word_count", "alternatives[1]") in got and ("symbol_to_word", "alternatives[1]") in got
    chinese = dict(_mc_item(), question="植物从空气中吸收哪种气体来制造食物？")
    assert text_failures(chinese, checks) == []  # one "word" to an English splitter: not judged by word counts


def test_a_bad_check_in_config_is_named():
    with pytest.raises(UserError, match=r"filter.quality.checks\[0\]: unknown filter 'NoSuchFilter'"):
        build_checks([{"filter": "NoSuchFilter", "fields": ["question"]}])
    with pytest.raises(UserError, match=r"filter.quality.checks\[0\].fields: unknown field"):
        build_checks([{"filter": "WordCountFilter", "fields": ["questions"]}])
    with pytest.raises(UserError, match=r"filter.quality.checks\[0\].params"):
        build_checks([{"filter": "WordCountFilter", "fields": ["question"], "params": {"min_wordz": 3}}])


def test_the_catalogs_answer_check_reaches_the_filter(tmp_path):
    """A family no hand list knows (afrimgsm) gets the math checks because the catalog derived
    `math` for its task and the seeds step wrote it into its summary."""
    import json

    from nemo_taskseed.filter.step import task_verifiers

    (tmp_path / "summary.json").write_text(
        json.dumps({"per_task": {"afrimgsm_direct_amh": {"kept": 3, "verifier": "math"}, "old_task": {"kept": 1}}})
    )
    kinds = task_verifiers(tmp_path)
    assert kinds == {"afrimgsm_direct_amh": "math"}
    item = {
        "family": "afrimgsm",
        "task": "afrimgsm_direct_amh",
        "format": "generative",
        "question": "Abebe has 3 goats...",
        "options": None,
        "answer_text": "five goats",
        "reference": None,
    }
    assert item_failures(item) == []  # by family alone: short answer, no number required
    assert [f["check"] for f in item_failures(item, task_kinds=kinds)] == ["math_answer_not_a_number"]
    assert task_verifiers(None) == {} and task_verifiers(tmp_path / "missing") == {}
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(UserError, match="summary.json: not valid JSON"):
        task_verifiers(tmp_path)


def test_a_replaced_benchmark_list_is_named_in_the_warnings():
    from nemo_taskseed.filter.settings import FilterSettings, decontam_benchmarks
    from nemo_taskseed.filter.summary import data_warnings

    fcfg = FilterSettings.from_config(load_config(None, ["filter.decontam.benchmarks=[{name: arc, task_dirs: [arc]}]"]))
    coverage = {"coverage": [{"loaded": True}]}
    warning = next(w for w in data_warnings(fcfg, coverage, None) if w.startswith("decontamination does not check"))
    assert "15 of the default benchmarks (gpqa, mmlu, mmlu_pro," in warning and "extra_benchmarks" in warning
    extra = FilterSettings.from_config(
        load_config(None, ["filter.decontam.extra_benchmarks=[{name: mine, task_dirs: [x]}]"])
    )
    assert [b["name"] for b in decontam_benchmarks(extra.raw["decontam"])][-1] == "mine"
    assert not any(w.startswith("decontamination does not check") for w in data_warnings(extra, coverage, None))
