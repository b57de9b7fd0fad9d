"""Majority-vote verification with the real SmolLM2-135M-Instruct on vLLM (CPU).

One engine for the module, a handful of short prompts. A 135M model is a poor judge, so the
assertions check the mechanism (k votes parsed from real samples, agreement = votes for the label
/ k, the keep rule applied, the vote recorded on the record), not the model's accuracy.
"""

from __future__ import annotations

import json

import pytest
from test_filter_fixtures import fixture_rows, gsm8k_fields, make_generated, make_seed, mc_fields

from nemo_taskseed.config import load_config
from nemo_taskseed.filter.records import records_to_frame
from nemo_taskseed.filter.verify import VoteSettings, decide, vote
from nemo_taskseed.filter.verify.stage import VerificationStage

pytestmark = pytest.mark.model


def vote_settings(**changed) -> VoteSettings:
    """configs/base/filter.yaml's `filter.verify.vote`, with the fields a test changes."""
    return VoteSettings.from_config(load_config(), **changed)


@pytest.fixture(scope="module")
def backend(vllm_backend):
    return vllm_backend  # the session's one engine (conftest.py)


def test_multiple_choice_vote_with_real_model(backend, fixtures_hf):
    rows = fixture_rows(fixtures_hf, "allenai/ai2_arc", "ARC-Easy", "train")[:3]
    seed = make_seed("arc", "arc_easy", mc_fields(rows[0]), 0)
    records = [make_generated(seed, mc_fields(r)) for r in rows]
    settings = vote_settings(k=4, temperature=0.8, threshold=0.5)
    results = vote(backend, records, "multiple_choice", settings)
    assert len(results) == 3
    for rec, res in zip(records, results):
        assert len(res.outputs) == 4 and len(res.votes) == 4
        # JSON-constrained decoding: a parsed vote is always one of the item's letters (a sample
        # cut off by max_tokens inside the JSON is an unparsed vote, counted against).
        parsed = [v for v in res.votes if v is not None]
        assert parsed and all(v in "ABCD"[: len(rec["options"])] for v in parsed), res.outputs
        assert res.target == "ABCD"[rec["answer_index"]]
        assert res.agreement == res.votes.count(res.target) / 4
        assert res.passed == decide(res.votes, res.target, 4, 0.5)[2]


def test_verification_stage_records_votes_and_rejects_disagreement(backend, fixtures_hf):
    """Stage path: MC votes and a GSM8K math vote; every voted row carries its agreement rate."""
    arc = fixture_rows(fixtures_hf, "allenai/ai2_arc", "ARC-Easy", "train")
    gsm = fixture_rows(fixtures_hf, "openai/gsm8k", "main", "train")
    seed = make_seed("arc", "arc_easy", mc_fields(arc[0]), 0)
    gseed = make_seed("gsm8k", "gsm8k", gsm8k_fields(gsm[0]), 0)
    records = [make_generated(seed, mc_fields(arc[5])), make_generated(gseed, gsm8k_fields(gsm[1]))]
    df = records_to_frame(records)
    stage = VerificationStage(
        vote=vote_settings(k=2, temperature=0.7, threshold=0.5, max_tokens_math=96), backend=backend
    )
    from nemo_curator.tasks import DocumentBatch

    stage.setup()
    out = stage.process(DocumentBatch(dataset_name="t", data=df)).to_pandas()
    for _, row in out.iterrows():
        ver = json.loads(row["annotations"])["verification"]
        assert ver["k"] == 2 and len(ver["votes"]) == 2
        assert ver["method"] in ("multiple_choice_vote", "math_vote")
        if row["status"] == "kept":
            assert ver["passed"] and ver["agreement"] >= 0.5
        else:
            assert row["reason"].endswith("_vote_disagrees") and not ver["passed"]
    math_ver = json.loads(out.iloc[1]["annotations"])["verification"]
    assert math_ver["method"] == "math_vote"
    assert math_ver["target"] == gsm8k_fields(gsm[1])["answer_text"].replace(",", "")
    assert math_ver["agreement"] == sum(v == math_ver["target"] for v in math_ver["votes"]) / 2


def test_a_panel_pools_votes_records_each_member_and_drops_what_is_too_easy(backend, fixtures_hf):
    """Two panel members (the one engine here under two names: there is one model offline; the
    pooling, the per-member records and the greedy too-easy rule are what is checked)."""
    from nemo_curator.tasks import DocumentBatch

    arc = fixture_rows(fixtures_hf, "allenai/ai2_arc", "ARC-Easy", "train")
    seed = make_seed("arc", "arc_easy", mc_fields(arc[0]), 0)
    records = [make_generated(seed, mc_fields(arc[i])) for i in (7, 8, 9, 10)]
    stage = VerificationStage(
        vote=vote_settings(k=2, temperature=0.8, threshold=0.5),
        panel_backends=[("judge-a", backend), ("judge-b", backend)],
        drop_too_easy=True,
    )
    df = stage.process(DocumentBatch(dataset_name="t", data=records_to_frame(records))).to_pandas()
    for row in df.itertuples():
        ver = json.loads(row.annotations)["verification"]
        assert ver["k"] == 4 and len(ver["votes"]) == 4  # 2 votes x 2 members, pooled
        assert [m["model"] for m in ver["members"]] == ["judge-a", "judge-b"]
        for i, member in enumerate(ver["members"]):
            assert member["agreement"] == ver["votes"][2 * i : 2 * i + 2].count(ver["target"]) / 2
        assert ver["agreement"] == ver["votes"].count(ver["target"]) / 4
        greedy = [g["answer"] for g in ver["greedy"]]
        assert len(greedy) == 2 and greedy[0] == greedy[1]  # one model at temperature 0: the same answer
        assert ver["too_easy"] == (greedy[0] == ver["target"])
        if row.status == "kept":
            assert not ver["too_easy"]
        elif ver["too_easy"] and ver["agreement"] >= 0.5:
            assert row.reason in ("multiple_choice_too_easy", "multiple_choice_vote_disagrees")


def test_a_shard_voted_again_reads_its_votes_from_its_cache(backend, fixtures_hf, tmp_path):
    """The stage asks through the shard's cache (`<cache_dir>/<shard>.verify.sqlite`): the same
    shard processed again (a restart) sends nothing and records the same votes; the counts reach
    the shard's metadata for the step summary. Panel members are keyed by name, so two members on
    one engine are two requests, not one answer read twice."""
    from nemo_curator.tasks import DocumentBatch

    arc = fixture_rows(fixtures_hf, "allenai/ai2_arc", "ARC-Easy", "train")
    seed = make_seed("arc", "arc_easy", mc_fields(arc[0]), 0)
    records = [make_generated(seed, mc_fields(arc[i])) for i in (11, 12)]

    def run() -> tuple[dict, list]:
        stage = VerificationStage(
            vote=vote_settings(k=2, temperature=0.8, threshold=0.5),
            panel_backends=[("judge-a", backend), ("judge-b", backend)],
            keep_outputs=True,
            cache_dir=str(tmp_path),
        )
        task = stage.process(DocumentBatch(dataset_name="s1", data=records_to_frame(records)))
        verdicts = [json.loads(a)["verification"] for a in task.to_pandas()["annotations"]]
        return task._metadata["requests.verify"], verdicts

    first, votes = run()
    assert first == {"total": 4, "cached": 0, "sent": 4, "refused": 0}  # 2 records x 2 members
    assert (tmp_path / "s1.verify.sqlite").is_file()
    again, votes_again = run()
    assert again == {"total": 4, "cached": 4, "sent": 0, "refused": 0}
    assert votes_again == votes and all(len(v["outputs"]) == 4 for v in votes)
