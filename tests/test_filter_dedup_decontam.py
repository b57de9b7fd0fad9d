"""Dedup and decontamination pieces on real fixture rows; agreement with lm-eval's janitor."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

from test_filter_fixtures import fixture_rows, mc_fields

from nemo_taskseed.filter.decontam import Benchmark, BenchmarkRow, NgramIndex, build_index, scored_splits
from nemo_taskseed.filter.dedup import NearDuplicateIndex, find_exact_duplicates
from nemo_taskseed.filter.text import normalize_words, string_leaves


def test_scored_splits_come_from_lm_eval_yaml():
    splits = {(s.benchmark, s.label) for s in scored_splits([
        Benchmark("gsm8k", ("gsm8k",)), Benchmark("gpqa", ("gpqa",)), Benchmark("arc", ("arc",)),
    ])}
    assert ("gsm8k", "openai/gsm8k/main:test") in splits
    assert ("gsm8k", "openai/gsm8k/main:train") not in splits  # few-shot split: dedup's job
    assert ("gpqa", "Idavidrein/gpqa/gpqa_main:train") in splits  # gpqa's only (scored) split
    assert {("arc", "allenai/ai2_arc/ARC-Easy:test"), ("arc", "allenai/ai2_arc/ARC-Easy:validation")} <= splits


def test_index_reports_missing_splits_instead_of_failing(fixtures_hf):
    built = build_index([{"name": "arc", "task_dirs": ["arc"]}], source="mirror", mirror=fixtures_hf)
    loaded = {c.split for c in built.coverage if c.loaded}
    assert loaded == {"allenai/ai2_arc/ARC-Easy:test", "allenai/ai2_arc/ARC-Challenge:test"}
    assert {c.split for c in built.missing} == {"allenai/ai2_arc/ARC-Easy:validation", "allenai/ai2_arc/ARC-Challenge:validation"}


def test_ngram_check_agrees_with_lm_eval_janitor(fixtures_hf):
    """Same 13-gram verdicts as lm-eval's Janitor on real test rows and clean train rows."""
    with redirect_stdout(io.StringIO()):  # the janitor prints a warning without its C++ helper
        from lm_eval.decontamination.janitor import Janitor
    test_rows = fixture_rows(fixtures_hf, "openai/gsm8k", "main", "test")[:30]
    train_rows = fixture_rows(fixtures_hf, "openai/gsm8k", "main", "train")[:30]
    janitor = Janitor(ngram_n=13, too_dirty_cutoff=1000, window_to_remove=0, minimum_slice_length=0)
    index = NgramIndex(13, short_min_words=0)
    for i, row in enumerate(test_rows):
        janitor.register_contaminant_python(row["question"])
        index.add(BenchmarkRow("gsm8k", "test", i), [row["question"]])
    probes = [r["question"] for r in test_rows[:10]] + [r["question"] for r in train_rows]
    # A test question embedded in a longer generated text is still caught.
    probes.append("Here is a new problem. " + test_rows[3]["question"] + " Explain.")
    for text in probes:
        ours = index.check([text]) is not None
        theirs = janitor.clean_python(text) != [text]
        assert ours == theirs, text
    assert sum(index.check([t]) is not None for t in probes) == 11


def test_short_benchmark_question_is_matched_whole(fixtures_hf):
    rows = fixture_rows(fixtures_hf, "tau/commonsense_qa", "default", "validation")
    short = next(r for r in rows if 8 <= len(r["question"].split()) < 13)
    index = NgramIndex(13, short_min_words=8)
    index.add(BenchmarkRow("commonsense_qa", "validation", 0), string_leaves(short))
    hit = index.check(["Q: " + short["question"].upper() + " Options: a, b"])
    assert hit is not None and hit.ngram == " ".join(normalize_words(short["question"]))
    assert index.check([" ".join(short["question"].split()[:-1])]) is None  # a prefix is not the string


def test_exact_and_fuzzy_dedup_on_real_rows(fixtures_hf):
    rows = [mc_fields(r) for r in fixture_rows(fixtures_hf, "allenai/openbookqa", "main", "train")[:40]]
    seeds = [dict(r, id=f"s{i}") for i, r in enumerate(rows[:5])]
    items = [(f"g{i}", "s0", r) for i, r in enumerate(rows[5:])]
    items.append(("copy", "s0", dict(rows[10], question=rows[10]["question"].upper() + "  ")))
    items.append(("seedcopy", "s1", dict(rows[1])))
    matches = find_exact_duplicates(items, seeds, ["context", "question", "options"])
    assert {(items[m.position][0], m.reason, m.match_id) for m in matches} == {
        ("copy", "exact_duplicate", "g5"), ("seedcopy", "exact_copy_of_seed", "s1")}

    fuzzy = NearDuplicateIndex(threshold=0.7, ngram_size=3)
    text = lambda r: " ".join([r["question"], *r["options"]])  # noqa: E731
    fuzzy.add_seeds((f"s{i}", text(r)) for i, r in enumerate(rows[:5]))
    opts = rows[7]["options"]
    near = dict(rows[7], options=[*opts[:-1], opts[-1] + " indeed"])
    probe = [(f"g{i}", "x", text(r)) for i, r in enumerate(rows[5:])] + [("near", "x", text(near))]
    found = {(probe[m.position][0], m.reason) for m in fuzzy.find(probe)}
    assert found == {("near", "near_duplicate")}
