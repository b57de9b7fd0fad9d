"""The answer_form check: a generative answer that restates its question, stops mid-sentence, or
narrates instead of giving a result is dropped; real answers are not.

Calibrated on real rows from ../shared/fixtures/hf: every GSM8K row (train and test) as a math item,
and every ARC, CommonsenseQA, OpenBookQA, MMLU and PIQA row as a short-answer item (its question and
its correct option's text) must pass.
"""

from __future__ import annotations

import pytest
from test_filter_fixtures import fixture_rows, gsm8k_fields, make_generated, make_seed, mc_fields, write_jsonl

from nemo_taskseed.config import load_config
from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.checks import get_check, stage_order
from nemo_taskseed.filter.quality.answer_form import AnswerFormSettings, answer_form_failures

MC_SOURCES = [
    ("allenai/ai2_arc", "ARC-Easy", "train"),
    ("allenai/ai2_arc", "ARC-Easy", "test"),
    ("allenai/ai2_arc", "ARC-Challenge", "test"),
    ("tau/commonsense_qa", "default", "train"),
    ("tau/commonsense_qa", "default", "validation"),
    ("allenai/openbookqa", "main", "train"),
    ("allenai/openbookqa", "main", "test"),
]


@pytest.fixture(scope="module")
def settings() -> AnswerFormSettings:
    return AnswerFormSettings.from_config(load_config())


def _generative(family: str, fields: dict) -> dict:
    return {"format": "generative", "family": family, **fields}


def test_real_answers_pass(fixtures_hf, settings):
    items = [
        _generative("gsm8k", gsm8k_fields(row))
        for split in ("train", "test")
        for row in fixture_rows(fixtures_hf, "openai/gsm8k", "main", split)
    ]
    mc = list(MC_SOURCES) + [
        ("cais/mmlu", p.parent.name, "test") for p in (fixtures_hf / "cais/mmlu").glob("*/test.jsonl")
    ]
    for dataset, config, split in mc:
        # nq_open is a short-answer family: the correct option's text stands as the answer.
        items += [_generative("nq_open", mc_fields(row)) for row in fixture_rows(fixtures_hf, dataset, config, split)]
    for row in fixture_rows(fixtures_hf, "baber/piqa", "default", "validation"):
        answer = row["sol1"] if int(row["label"]) == 0 else row["sol2"]
        items.append(_generative("nq_open", {"question": row["goal"], "answer_text": answer}))
    flagged = [(i["question"][:60], i["answer_text"][:60]) for i in items if answer_form_failures(i, settings)]
    assert len(items) >= 1500 and flagged == []


def test_non_answers_are_named(fixtures_hf, settings):
    rows = fixture_rows(fixtures_hf, "openai/gsm8k", "main", "test")
    restated = 0
    for row in rows:
        # What the default job's 135M generator returned: the first clause of its own question.
        clause = row["question"].split(",")[0]
        if len(clause.split()) < settings.min_words or "," not in row["question"]:
            continue
        item = _generative("gsm8k", {**gsm8k_fields(row), "answer_text": clause + ","})
        checks = {f["check"] for f in answer_form_failures(item, settings)}
        assert {"answer_restates_question", "answer_incomplete"} <= checks, (clause, checks)
        restated += 1
    assert restated >= 50
    question = rows[0]["question"]
    cut = _generative("gsm8k", {"question": question, "answer_text": "Each day, the baker sold 48 apples, but"})
    assert [f["check"] for f in answer_form_failures(cut, settings)] == ["answer_incomplete"]
    story = "She buys the eggs at the market and then she sells 16 of them to her neighbours"
    narrated = _generative("gsm8k", {"question": question, "answer_text": story})
    assert [f["check"] for f in answer_form_failures(narrated, settings)] == ["math_no_final_answer"]
    stated = _generative("gsm8k", {"question": question, "answer_text": story + ", so the answer is 18"})
    assert answer_form_failures(stated, settings) == []
    # Multiple choice and code are not this check's business.
    assert answer_form_failures({**cut, "format": "multiple_choice"}, settings) == []
    assert answer_form_failures({**cut, "family": "mbpp"}, settings) == []


def test_settings_errors_name_the_key():
    section = dict(load_config().filter.quality.answer_form)
    with pytest.raises(UserError, match=r"filter.quality.answer_form: unknown key\(s\) \['min_word'\]"):
        AnswerFormSettings.from_config({**section, "min_word": 3})
    with pytest.raises(UserError, match="filter.quality.answer_form.restated_share"):
        AnswerFormSettings.from_config({**section, "restated_share": 0})
    with pytest.raises(KeyError, match="Unknown check 'answer_froms'. Available: schema, text_quality"):
        get_check("answer_froms")


def test_the_step_drops_them_with_a_reason_and_a_row_in_the_summary(fixtures_hf, tmp_path):
    """Declared once (filter/quality/answer_form.py): the step runs it in its place, the rejects
    carry its name, the summary table has its row; switched off, the summary warns."""
    from nemo_taskseed.filter.step import run_filter
    from nemo_taskseed.pipeline.shards import read_part_records

    rows = fixture_rows(fixtures_hf, "openai/gsm8k", "main", "train")
    seed = make_seed("gsm8k", "gsm8k", gsm8k_fields(rows[0]), 0)
    good = make_generated(seed, gsm8k_fields(rows[1]))
    restated_fields = gsm8k_fields(rows[2])
    restated_fields["answer_text"] = rows[2]["question"].split(",")[0] + ","
    bad = make_generated(seed, restated_fields)
    write_jsonl(tmp_path / "gen" / "generated.jsonl", [good, bad])
    write_jsonl(tmp_path / "seeds" / "seeds.jsonl", [seed])
    # Only the rule checks matter here: decontamination and the embedding checks are off.
    overrides = [
        "filter.executor=inline",
        "filter.verify.enabled=false",
        "filter.decontam.enabled=false",
        "filter.dedup.semantic.enabled=false",
        "filter.diversity.enabled=false",
    ]
    result = run_filter(load_config(None, overrides), tmp_path / "gen", tmp_path / "out", tmp_path / "seeds")
    assert result["rejected_by_reason"] == {"answer_form:answer_restates_question": 1}
    assert [r["id"] for r in read_part_records(tmp_path / "out", "curated")] == [good["id"]]
    assert stage_order().index("item_rules") < stage_order().index("answer_form") < stage_order().index("explanation")
    assert any(line.startswith("answer_form") for line in result["summary"].splitlines())
    off = run_filter(
        load_config(None, [*overrides, "filter.quality.answer_form.enabled=false"]),
        tmp_path / "gen",
        tmp_path / "off",
        tmp_path / "seeds",
    )
    assert (
        off["kept"] == 2 and "answer form checks are off (filter.quality.answer_form.enabled=false)" in off["warnings"]
    )
