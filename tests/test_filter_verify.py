"""Code checks in the sandbox (real MBPP rows), answer extraction, the vote rule and the registry."""

from __future__ import annotations

import json
import re

import pytest
from test_filter_fixtures import fixture_rows, make_generated, make_seed, mbpp_fields

from nemo_taskseed.config import load_config
from nemo_taskseed.filter.records import records_to_frame
from nemo_taskseed.filter.shard_io import stage_counts
from nemo_taskseed.filter.verify import CodeSettings, decide, run_code_tests
from nemo_taskseed.filter.verify.sandbox import bwrap_path
from nemo_taskseed.filter.verify.stage import VerificationStage
from nemo_taskseed.registry import (
    extract_choice_letter,
    extract_math_answer,
    normalize_math_answer,
    normalize_short_answer,
    verifier_kind,
)

# Code runs only inside bubblewrap (scripts/setup.sh installs it); without it code verification
# refuses to run, which tests/test_sandbox_probes.py checks.
needs_bwrap = pytest.mark.skipif(bwrap_path() is None, reason="bubblewrap is not installed")


@pytest.fixture(scope="module")
def mbpp(fixtures_hf):
    return fixture_rows(fixtures_hf, "google-research-datasets/mbpp", "full", "train")


@needs_bwrap
def test_real_mbpp_solution_passes_its_tests(mbpp):
    row = mbpp[0]
    res = run_code_tests(row["code"], row["test_list"], timeout_s=10)
    assert res.status == "passed", res.stderr_tail


@needs_bwrap
def test_wrong_solution_fails_with_the_failing_test(mbpp):
    row = mbpp[1]
    # The real solution, with every test asserting the opposite of its first test.
    tests = [row["test_list"][0].replace("==", "!=", 1)] if "==" in row["test_list"][0] else ["assert False"]
    res = run_code_tests(row["code"], tests, timeout_s=10)
    assert res.status == "failed" and res.failed_test == 0


@needs_bwrap
def test_endless_solution_times_out_and_is_killed(mbpp):
    code = mbpp[2]["code"] + "\nwhile True:\n    pass\n"
    res = run_code_tests(code, mbpp[2]["test_list"], timeout_s=2)
    assert res.status == "timeout"


@needs_bwrap
def test_exiting_early_is_not_a_pass(mbpp):
    row = mbpp[0]
    for escape in ("import sys; sys.exit(0)", "import os; os._exit(0)"):
        res = run_code_tests(row["code"] + "\n" + escape, ["assert False"], timeout_s=10)
        assert res.status == "error", escape


@needs_bwrap
def test_sandbox_blocks_network_and_caps_memory():
    net = run_code_tests(
        "import socket\ndef f():\n    socket.create_connection(('93.184.216.34', 80), timeout=2)\n    return True",
        ["assert f()"],
        timeout_s=10,
    )
    assert net.status == "failed" and "Network is unreachable" in net.stderr_tail
    mem = run_code_tests("buf = bytearray(2 * 1024**3)", ["assert True"], timeout_s=10, memory_mb=256)
    assert mem.status == "error" and "MemoryError" in mem.stderr_tail


@needs_bwrap
def test_verification_stage_keeps_passing_code_and_rejects_failing(mbpp):
    seed = make_seed("mbpp", "mbpp", mbpp_fields(mbpp[0]), 0)
    good = make_generated(seed, mbpp_fields(mbpp[3]))
    bad_fields = mbpp_fields(mbpp[4])
    # Same program, then its function redefined to return None: the real tests must fail.
    fn = re.match(r"assert\s+(\w+)\(", bad_fields["tests"][0]).group(1)
    bad_fields["reference"] += f"\ndef {fn}(*args, **kwargs):\n    return None\n"
    bad = make_generated(seed, bad_fields)
    from nemo_curator.tasks import DocumentBatch

    stage = VerificationStage(code=CodeSettings.from_config(load_config()))
    stage.setup()
    good_label = make_generated(seed, mbpp_fields(mbpp[3]), variant="label")  # same item, other variant
    out = stage.process(DocumentBatch(dataset_name="t", data=records_to_frame([good, bad, good_label])))
    df = out.to_pandas()
    assert list(df["status"]) == ["kept", "rejected", "kept"]
    # One sandbox run per item: the variant carries the very same result.
    assert df.iloc[0]["annotations"] == df.iloc[2]["annotations"]
    assert df.iloc[1]["reason"] == "code_failed"
    assert json.loads(df.iloc[0]["annotations"])["verification"]["status"] == "passed"
    assert stage_counts(df)["verify"] == {"in": 3, "kept": 2, "dropped": {df.iloc[1]["reason"]: 1}}


def test_real_gsm8k_answers_extract_and_normalize(fixtures_hf):
    rows = fixture_rows(fixtures_hf, "openai/gsm8k", "main", "test")[:20]
    for row in rows:
        final = row["answer"].split("####")[-1].strip()
        assert normalize_math_answer(extract_math_answer(row["answer"])) == normalize_math_answer(final)
    assert normalize_math_answer(extract_math_answer("so the total is \\boxed{\\frac{6}{4}}")) == "3/2"
    assert normalize_math_answer(extract_math_answer("She pays $1,250.00 in total.")) == "1250"
    assert normalize_math_answer("18 dollars") != normalize_math_answer("19")


def test_choice_letters_short_answers_and_registry():
    assert extract_choice_letter('{ \n"answer" : "C"\n}', 4) == 2
    assert extract_choice_letter("The answer is B.", 4) == 1
    assert extract_choice_letter("The answer is a bank", 2, ["a bank", "the mall"]) == 0
    assert extract_choice_letter("E", 4) is None  # out of range for 4 options
    assert normalize_short_answer("The Eiffel Tower.") == normalize_short_answer("eiffel tower")
    assert verifier_kind("gsm8k", "generative") == "math"
    assert verifier_kind("mbpp", "generative") == "code"
    assert verifier_kind("arc", "multiple_choice") == "multiple_choice"
    assert verifier_kind("triviaqa", "generative") == "short_answer"
    assert verifier_kind("my_family", "generative", {"my_family": "math"}) == "math"


def test_vote_rule():
    assert decide(["A", "A", "B", None, "A"], "A", 5, 0.6) == ("A", 0.6, True)
    assert decide(["A", "B", "B", "C", "A"], "A", 5, 0.4)[2] is False  # tie with B: not a majority
    assert decide([None, None], "A", 2, 0.5) == (None, 0.0, False)
    assert decide(["7", "7"], None, 2, 0.5)[2] is False  # no reference: never passes


def test_vote_settings_vllm_would_refuse_are_config_errors_naming_the_field():
    from nemo_taskseed.errors import UserError
    from nemo_taskseed.filter.verify import VoteSettings

    cfg = load_config()
    assert VoteSettings.from_config(cfg, k=1, temperature=0).k == 1  # one greedy vote is fine
    for bad, field in (
        ({"k": 5, "temperature": 0}, "filter.verify.vote.k=5 with filter.verify.vote.temperature=0"),
        ({"k": 0}, "filter.verify.vote.k must be >= 1"),
        ({"threshold": 1.5}, "filter.verify.vote.threshold"),
        ({"max_tokens_choice": 0}, "filter.verify.vote.max_tokens_choice"),
        ({"top_p": 0}, "filter.verify.vote.top_p"),
    ):
        with pytest.raises(UserError, match=field.replace(".", r"\.")):
            VoteSettings.from_config(cfg, **bad)
    # Defaults live in configs/base/filter.yaml only: a section without a key names the key.
    with pytest.raises(UserError, match=r"filter\.verify\.vote\.temperature"):
        VoteSettings.from_config({"k": 3})


@needs_bwrap
def test_run_filter_verifies_code_items_and_revalidates_final_records(mbpp, fixtures_hf, tmp_path):
    """Verification inside the step (code items need no model), then the final schema check."""
    from test_filter_fixtures import write_jsonl

    from nemo_taskseed.filter.step import run_filter
    from nemo_taskseed.pipeline.shards import read_part_records

    seed = make_seed("mbpp", "mbpp", mbpp_fields(mbpp[0]), 0)
    good = make_generated(seed, mbpp_fields(mbpp[20]))
    hang = mbpp_fields(mbpp[21])
    hang["reference"] += "\nwhile True:\n    pass\n"
    write_jsonl(tmp_path / "gen" / "generated.jsonl", [good, make_generated(seed, hang)])
    write_jsonl(tmp_path / "seeds" / "seeds.jsonl", [seed])
    cfg = load_config(
        "benchmarks/smoke",
        [
            "filter.executor=inline",
            "filter.decontam.source=mirror",
            f"filter.decontam.mirror={fixtures_hf}",
            "filter.verify.code.timeout_s=2",
        ],
    )
    result = run_filter(cfg, tmp_path / "gen", tmp_path / "out", tmp_path / "seeds")
    assert result["kept"] == 1 and result["rejected_by_reason"] == {"verify:code_timeout": 1}
    [curated] = read_part_records(tmp_path / "out", "curated")
    assert curated["id"] == good["id"] and curated["verification"]["status"] == "passed"
    quality = json.loads((tmp_path / "out" / "quality_report.json").read_text())
    assert quality["stages"]["final_schema"] == {"in": 1, "kept": 1, "dropped": {}}
    assert quality["families"]["mbpp"]["verified"] == 1
