"""Stage 5 end to end on real fixture rows: planted copies, near copies and test items are caught.

Seeds come from training splits, generated records from other training rows of the same
datasets; planted among them: an exact copy, a near copy, copies of seeds, benchmark test items
(a 13-gram match and a short question matched whole), a record that breaks the schema, an
unparseable line and a seed that is itself a test item. Verification needs the model and is
covered in test_filter_vote.py; here it is switched off. The same step on a two-node Ray cluster,
compared byte for byte with the in-process run, is in test_multinode.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_filter_fixtures import (
    LETTERS,
    fixture_rows,
    gsm8k_fields,
    make_generated,
    make_seed,
    mbpp_fields,
    mc_fields,
    write_jsonl,
)

from nemo_taskseed.config import load_config
from nemo_taskseed.filter.step import run_filter
from nemo_taskseed.pipeline.shards import read_part_records


def _overrides(fixtures_hf: Path, executor: str) -> list[str]:
    return [
        f"filter.executor={executor}",
        "filter.verify.enabled=false",
        "filter.decontam.source=mirror",
        f"filter.decontam.mirror={fixtures_hf}",
    ]


def _cfg(fixtures_hf: Path, executor: str):
    return load_config("benchmarks/smoke", _overrides(fixtures_hf, executor))


@pytest.fixture(scope="module")
def planted(tmp_path_factory, fixtures_hf):
    root = tmp_path_factory.mktemp("filter_run")
    arc_train = fixture_rows(fixtures_hf, "allenai/ai2_arc", "ARC-Easy", "train")
    arc_test = fixture_rows(fixtures_hf, "allenai/ai2_arc", "ARC-Easy", "test")
    csqa_val = fixture_rows(fixtures_hf, "tau/commonsense_qa", "default", "validation")
    csqa_train = fixture_rows(fixtures_hf, "tau/commonsense_qa", "default", "train")
    gsm_train = fixture_rows(fixtures_hf, "openai/gsm8k", "main", "train")
    gsm_test = fixture_rows(fixtures_hf, "openai/gsm8k", "main", "test")
    mbpp_train = fixture_rows(fixtures_hf, "google-research-datasets/mbpp", "full", "train")
    mmlu_test = fixture_rows(fixtures_hf, "cais/mmlu", "anatomy", "test")

    seeds = [make_seed("arc", "arc_easy", mc_fields(arc_train[i]), i) for i in range(10)]
    seeds += [make_seed("gsm8k", "gsm8k", gsm8k_fields(gsm_train[i]), i) for i in range(3)]
    seeds += [make_seed("mbpp", "mbpp", mbpp_fields(mbpp_train[i]), i) for i in range(2)]
    # A "training" seed that is really an MMLU test item (the leak the seeds check exists for).
    dirty_seed = make_seed("mmlu", "mmlu_anatomy", mc_fields(mmlu_test[0]), 0)
    seeds.append(dirty_seed)

    clean = [make_generated(seeds[i % 10], mc_fields(arc_train[100 + i])) for i in range(12)]
    clean += [make_generated(seeds[10 + i], gsm8k_fields(gsm_train[100 + i])) for i in range(3)]
    clean += [make_generated(seeds[13], mbpp_fields(mbpp_train[100 + i])) for i in range(2)]
    clean += [make_generated(seeds[0], mc_fields(csqa_train[i])) for i in range(3)]
    # Another variant of the first item: same question on purpose, so not a duplicate.
    clean.append(make_generated(seeds[0], mc_fields(arc_train[100]), variant="label"))

    expected: dict[str, tuple[str, str]] = {}

    def plant(rec, stage, reason):
        expected[rec["id"]] = (stage, reason)
        return rec

    # Exact copy of a generated item: only case and spacing differ. Of a duplicate pair the item
    # with the smaller id survives (dedup orders by item id, never by file or shard order).
    fields = mc_fields(arc_train[100])
    fields["question"] = "  " + fields["question"].upper().replace(" ", "  ")
    exact_copy = make_generated(seeds[1], fields, sample_index=7)
    exact_copy_label = make_generated(seeds[1], fields, sample_index=7, variant="label")
    original = [r for r in clean if r["lineage"]["item_id"] == clean[0]["lineage"]["item_id"]]
    loser = [exact_copy, exact_copy_label]
    if exact_copy["lineage"]["item_id"] < clean[0]["lineage"]["item_id"]:
        loser, clean = original, [r for r in clean if r not in original] + [exact_copy, exact_copy_label]
    for rec in loser:  # both variants share the verdict
        plant(rec, "exact_dedup", "exact_duplicate")
    # Exact copy of its own seed.
    seed_copy = plant(
        make_generated(seeds[2], mc_fields(arc_train[2]), sample_index=3), "exact_dedup", "exact_copy_of_seed"
    )
    # Near copy of a generated item: one word changed in the longest clean question (word
    # 3-gram Jaccard ~0.85; a 15-word item with one word changed sits at ~0.75, too close to
    # the 0.7 threshold for a MinHash estimate to be a stable test).
    longest = max(range(101, 112), key=lambda i: len(mc_fields(arc_train[i])["question"].split()))
    fields = mc_fields(arc_train[longest])
    words = fields["question"].split()
    words[len(words) // 2] = "notably"
    fields["question"] = " ".join(words)
    near_copy = make_generated(seeds[3], fields, sample_index=5)
    twin = next(r for r in clean if r["question"] == mc_fields(arc_train[longest])["question"])
    if near_copy["lineage"]["item_id"] < twin["lineage"]["item_id"]:
        clean = [r for r in clean if r is not twin] + [near_copy]
        near_copy = twin
    plant(near_copy, "fuzzy_dedup", "near_duplicate")
    # Near copy of its own seed: the seed's question with its last word changed.
    fields = mc_fields(arc_train[4])
    fields["question"] = fields["question"].rsplit(" ", 1)[0] + " today?"
    near_seed = plant(make_generated(seeds[4], fields, sample_index=2), "fuzzy_dedup", "near_copy_of_seed")
    # Benchmark test items: ARC-Easy test (13-grams), GSM8K test, a short CommonsenseQA question
    # (8 words: no 13-gram; matched whole) with options of our own.
    arc_item = plant(make_generated(seeds[5], mc_fields(arc_test[0])), "decontam", "benchmark_overlap")
    gsm_item = plant(make_generated(seeds[10], gsm8k_fields(gsm_test[0])), "decontam", "benchmark_overlap")
    short_q = next(r["question"] for r in csqa_val if 8 <= len(r["question"].split()) < 13)
    csqa_item = plant(
        make_generated(
            seeds[6],
            {
                "question": short_q,
                "options": ["at the office", "in a canoe", "under water"],
                "answer_index": 0,
                "answer_text": "at the office",
            },
        ),
        "decontam",
        "benchmark_overlap",
    )
    # Child of the contaminated seed, itself clean.
    child = plant(make_generated(dirty_seed, mc_fields(csqa_train[50])), "decontam", "seed_contaminated")
    # Schema violation: no answer_text.
    broken = make_generated(seeds[7], mc_fields(arc_train[150]))
    broken["answer_text"] = ""
    plant(broken, "schema", "invalid:answer_text")

    # Enriched items, all four variants each: one clean, and the flaws a small generator makes.
    # A flaw in the enrichment costs the item its reasoning/context documents (label/answer stay);
    # a flaw in the item itself costs every document.
    def variants(seed, fields, enrichment):
        recs = [make_generated(seed, fields, variant=v) for v in ("label", "answer", "reasoning", "context")]
        for rec in recs:
            rec["enrichment"] = enrichment
        return recs

    def enriched_mc(fields, *, pick=None, why=None, knowledge=None, reasoning=None):
        label = fields["answer_index"]
        letter = LETTERS[label if pick is None else pick]
        return {
            "reasoning": reasoning
            or (
                f"Looking at each choice in turn, only {fields['options'][label]!r} is consistent "
                f"with the situation the question describes. Therefore the answer is {letter}."
            ),
            "alternatives": [
                {
                    "option": LETTERS[i],
                    "why_wrong": why(i, o)
                    if why
                    else f"Choice {LETTERS[i]} contradicts the observations described, so it cannot explain them.",
                }
                for i, o in enumerate(fields["options"])
                if i != label
            ],
            "knowledge": knowledge
            or (
                "Scientists test explanations by observing carefully, recording measurements, "
                "and comparing results across repeated trials."
            ),
        }

    def strip(recs, stage, reason):
        for rec in recs:
            if rec["variant"] in ("reasoning", "context"):
                plant(rec, stage, reason)
        return recs, [r for r in recs if r["variant"] in ("label", "answer")]

    mc = [mc_fields(arc_train[160 + i]) for i in range(6)]
    good = variants(seeds[8], mc[0], enriched_mc(mc[0]))
    wrong_pick = mc[1]["answer_index"] - 1 if mc[1]["answer_index"] else 1
    flawed = [
        strip(
            variants(seeds[8], mc[1], enriched_mc(mc[1], pick=wrong_pick)),
            "explanation",
            "reasoning_concludes_other_option",
        ),
        strip(
            variants(
                seeds[8],
                mc[2],
                enriched_mc(
                    mc[2],
                    reasoning=("Plants need light to make their own food. " * 15)
                    + f"So the answer is {LETTERS[mc[2]['answer_index']]}.",
                ),
            ),
            "text_quality",
            "repeating_dup_4gram:reasoning",
        ),
        strip(
            variants(seeds[9], mc[3], enriched_mc(mc[3], why=lambda i, o: f"The answer is {LETTERS[i]}. {o}")),
            "explanation",
            "alternative_restates_option",
        ),
        strip(variants(seeds[9], mc[4], enriched_mc(mc[4], knowledge="A")), "text_quality", "word_count:knowledge"),
    ]
    dup = dict(mc[5], options=[*mc[5]["options"][:-1], mc[5]["options"][0].upper() + "."])
    dup_options = [plant(r, "item_rules", "options_duplicate") for r in variants(seeds[9], dup, enriched_mc(dup))]
    bad_math = gsm8k_fields(gsm_train[120])
    bad_math["reference"] = "She buys 6 boxes at $3 each: 6 * 3 = $21.\n#### 21"
    bad_math["answer_text"] = "21"
    bad_arithmetic = [
        plant(make_generated(seeds[11], bad_math, variant=v), "item_rules", "arithmetic_wrong")
        for v in ("label", "answer")
    ]
    clean += good + [r for _, kept_variants in flawed for r in kept_variants]

    # ARC-Easy train row 105 asks what ARC-Challenge test row 14 asks, in other words (the most
    # abundant greenhouse gas; cosine 0.83): no shared 13-gram, caught by the semantic check.
    restated_too: list = []
    restated = next(r for r in clean if r["question"] == mc_fields(arc_train[105])["question"])
    clean.remove(restated)
    plant(restated, "semantic_decontam", "benchmark_paraphrase")
    # Since the question alone is embedded too (new options do not hide a test item): an ARC-Easy
    # train item "Typically, sedimentary rocks are formed" asks what ARC-Challenge test row 97 asks
    # ("How are sedimentary rocks made?", 0.847; same answer), both of its records.
    for r in [r for r in clean if r["question"] == "Typically, sedimentary rocks are formed"]:
        clean.remove(r)
        plant(r, "semantic_decontam", "benchmark_paraphrase")
        restated_too.append(r)
    generated = clean + [r for r in (*loser, near_copy, restated, *restated_too) if r not in clean]
    generated += [seed_copy, near_seed, arc_item, gsm_item, csqa_item, child, broken]
    generated += [r for recs, _ in flawed for r in recs if r["variant"] in ("reasoning", "context")]
    generated += dup_options + bad_arithmetic
    write_jsonl(root / "seeds" / "seeds.jsonl", seeds)
    write_jsonl(root / "gen" / "generated-00000.jsonl", generated, extra_lines=['{"id": "truncated'])
    return {
        "root": root,
        "expected": expected,
        "clean_ids": {r["id"] for r in clean},
        "dirty_seed": dirty_seed,
        "arc_test_q": mc_fields(arc_test[0])["question"],
        "bad_line": len(generated) + 1,
    }


def _check_outputs(out: Path, planted: dict, result: dict) -> None:
    kept = read_part_records(out, "curated")
    rejected = read_part_records(out, "rejected")
    got = {r["id"]: (r["stage"], r["reason"]) for r in rejected if r["id"]}
    assert got == planted["expected"]
    assert {r["id"] for r in kept} == planted["clean_ids"]
    # The unparseable line is rejected with its file and line, not a crash.
    bad = [r for r in rejected if r["reason"] == "unparseable_json"]
    assert len(bad) == 1 and bad[0]["detail"]["line"] == planted["bad_line"]
    assert result["in"] == len(kept) + len(rejected)

    by_id = {r["id"]: r for r in rejected if r["id"]}
    for r in by_id.values():
        if r["reason"] == "near_copy_of_seed":
            assert r["detail"]["own_seed"] is True and r["detail"]["jaccard"] >= 0.7
        if r["reason"] == "exact_copy_of_seed":
            assert r["detail"]["own_seed"] is True
        if r["reason"] == "invalid:answer_text":
            assert r["detail"]["errors"][0].startswith("answer_text")

    report = json.loads((out / "contamination_report.json").read_text())
    benches = {r["benchmark"] for r in report["records"] if r["reason"] == "benchmark_overlap"}
    assert benches == {"arc", "gsm8k", "commonsense_qa"}
    arc_hit = next(r for r in report["records"] if r["benchmark"] == "arc" and r["reason"] == "benchmark_overlap")
    restated = [r for r in report["records"] if r["reason"] == "benchmark_paraphrase"]
    assert sorted((r["split"], r["row"], r["verdict"]) for r in restated) == [
        ("allenai/ai2_arc/ARC-Challenge:test", 14, "above_threshold"),
        ("allenai/ai2_arc/ARC-Challenge:test", 97, "above_threshold"),
        ("allenai/ai2_arc/ARC-Challenge:test", 97, "above_threshold"),
    ]
    gas = next(r for r in restated if r["row"] == 14)
    assert gas["item_text"].startswith("Which gas accounts") and gas["score"] >= 0.8
    assert report["semantic"]["verdicts"] == {"above_threshold": 3}
    assert arc_hit["split"] == "allenai/ai2_arc/ARC-Easy:test"
    assert len(arc_hit["ngram"].split()) == 13 and arc_hit["ngram"] in " ".join(
        planted["arc_test_q"].lower().replace("?", "").split()
    )
    assert [s["seed_id"] for s in report["seeds"]] == [planted["dirty_seed"]["id"]]
    assert report["seeds"][0]["benchmark"] == "mmlu"
    assert report["totals_per_benchmark"]["mmlu"] == {"records_dropped": 1, "seeds_contaminated": 1}
    # gsm8k's train split is few-shot only: never indexed, so gsm8k seeds are not "contaminated".
    assert not any(c["split"].endswith(":train") for c in report["coverage"] if c["benchmark"] == "gsm8k")

    quality = json.loads((out / "quality_report.json").read_text())
    arc = quality["families"]["arc"]
    # 24 plain records (12 + 3 + 1 + 2 + six planted + the broken one) and six enriched items x 4 variants.
    assert arc["seeds_in"] == 10 and arc["generated"] == 24 + 6 * 4
    assert arc["parsed"] == arc["generated"] - 1
    # 15 plain records, the clean enriched item's 4 documents, the label/answer documents of the 4
    # items whose enrichment failed.
    # - 2: the sedimentary-rocks item (two records) restates an ARC-Challenge test row (see _planted).
    assert arc["kept"] == 15 + 4 + 4 * 2 - 2 and arc["kept"] <= arc["deduped"] <= arc["decontaminated"] <= arc["parsed"]
    assert sum(arc["answer_positions"]["kept"]["counts"].values()) == arc["kept"]
    assert "arc" in result["summary"] and "TOTAL" in result["summary"]
    # The benchmarks checked, each with its scored splits loaded / missing.
    assert "decontamination: 8 benchmarks checked (scored splits loaded / missing)" in result["summary"]
    assert re.search(r"^openbookqa +1 / 1 +missing: allenai/openbookqa/main:validation$", result["summary"], re.M)
    # Diversity per family of the items kept before verification (19 arc items), with its plot.
    div = quality["diversity"]["arc"]
    assert div["items"] == 18 and 0 < div["mean_nn_similarity"] < 1 and 0 <= div["closer_to_other_seed"] <= 1
    assert (out / "diversity.png").read_bytes()[:4] == b"\x89PNG" and "diversity.png" in result["files"]
    assert quality["stages"]["semantic_dedup"]["dropped"] == {}


def test_planted_items_are_caught_inline(planted, fixtures_hf, tmp_path):
    cfg = _cfg(fixtures_hf, "inline")
    root = planted["root"]
    result = run_filter(cfg, root / "gen", tmp_path / "out", root / "seeds")
    _check_outputs(tmp_path / "out", planted, result)


def test_one_large_file_is_many_shards_and_keeps_the_same_records(planted, fixtures_hf, tmp_path):
    """The one input file cut by size (filter.shard_bytes) into several shards gives the same kept
    and rejected records, in the same order, as one shard per file: every decision (dedup
    survivors, contaminated seeds, semantic duplicates) goes by item id, not by shard."""
    root = planted["root"]
    size = (root / "gen" / "generated-00000.jsonl").stat().st_size
    whole = run_filter(_cfg(fixtures_hf, "inline"), root / "gen", tmp_path / "whole", root / "seeds")
    cut_cfg = load_config("benchmarks/smoke", [*_overrides(fixtures_hf, "inline"), f"filter.shard_bytes={size // 5}"])
    cut = run_filter(cut_cfg, root / "gen", tmp_path / "cut", root / "seeds")
    assert whole["shards"]["total"] == 1 and cut["shards"]["total"] >= 5
    for kind in ("curated", "rejected"):
        a, b = read_part_records(tmp_path / "whole", kind), read_part_records(tmp_path / "cut", kind)
        if kind == "rejected":  # a bad line names its file and line, not its shard: the same too
            assert [r.get("detail") for r in a] == [r.get("detail") for r in b]
        assert a == b and len(a) > 10
    assert whole["rejected_by_reason"] == cut["rejected_by_reason"]


def test_cli_filter_writes_reports_and_names_bad_overrides(planted, fixtures_hf, tmp_path, capsys):
    from nemo_taskseed.cli import main

    root = planted["root"]
    out = tmp_path / "cli"
    rc = main(
        [
            "filter",
            "--in",
            str(root / "gen"),
            "--seeds",
            str(root / "seeds"),
            "--out",
            str(out),
            "--mirror",
            str(fixtures_hf),
            "--config",
            "benchmarks/smoke",
            "--executor",
            "inline",
            "filter.verify.enabled=false",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "TOTAL" in printed and '"kept": 30' in printed
    assert {p.name for p in out.iterdir()} >= {
        "curated",
        "rejected",
        "shards",
        "contamination_report.json",
        "contamination.md",
        "quality_report.json",
        "quality_summary.txt",
        "summary.json",
    }
    rc = main(["filter", "--in", str(root / "gen"), "--out", str(out), "oops"])
    assert rc == 2 and "key=value" in capsys.readouterr().err
