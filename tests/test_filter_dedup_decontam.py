"""Dedup and decontamination pieces on real fixture rows; agreement with lm-eval's janitor."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

from test_filter_fixtures import fixture_rows, mc_fields

from nemo_taskseed.filter.decontam import Benchmark, BenchmarkRow, NgramIndex, build_index, scored_splits
from nemo_taskseed.filter.dedup import DedupSettings, resolve, signatures_for
from nemo_taskseed.filter.text import normalize_words, string_leaves


def test_scored_splits_come_from_lm_eval_yaml():
    splits = {
        (s.benchmark, s.label)
        for s in scored_splits(
            [
                Benchmark("gsm8k", ("gsm8k",)),
                Benchmark("gpqa", ("gpqa",)),
                Benchmark("arc", ("arc",)),
            ]
        )
    }
    assert ("gsm8k", "openai/gsm8k/main:test") in splits
    assert ("gsm8k", "openai/gsm8k/main:train") not in splits  # few-shot split: dedup's job
    assert ("gpqa", "Idavidrein/gpqa/gpqa_main:train") in splits  # gpqa's only (scored) split
    assert {("arc", "allenai/ai2_arc/ARC-Easy:test"), ("arc", "allenai/ai2_arc/ARC-Easy:validation")} <= splits


def test_index_reports_missing_splits_instead_of_failing(fixtures_hf):
    built = build_index([{"name": "arc", "task_dirs": ["arc"]}], source="mirror", mirror=fixtures_hf)
    loaded = {c.split for c in built.coverage if c.loaded}
    assert loaded == {"allenai/ai2_arc/ARC-Easy:test", "allenai/ai2_arc/ARC-Challenge:test"}
    assert {c.split for c in built.missing} == {
        "allenai/ai2_arc/ARC-Easy:validation",
        "allenai/ai2_arc/ARC-Challenge:validation",
    }


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


def _settings(**kw) -> DedupSettings:
    base = dict(
        fields=("context", "question", "options"),
        exact=True,
        fuzzy=True,
        threshold=0.7,
        num_perm=128,
        ngram_size=3,
        seed=1,
    )
    return DedupSettings(**{**base, **kw})


def _resolve(tmp_path, name, seeds, item_shards, settings):
    """Seeds as shard 0, then each list of items as one shard; {item id: (reason, match id)}."""
    prefixes = [tmp_path / name / "seeds"]
    signatures_for(seeds, settings, seeds=True).save(prefixes[0])
    for i, items in enumerate(item_shards):
        prefixes.append(tmp_path / name / f"part{i}")
        signatures_for(items, settings).save(prefixes[-1])
    decided = resolve(prefixes, settings)
    return {
        f"{key:016x}": (d.reason, d.detail["match_id"], d.detail.get("own_seed"))
        for drops in decided.values()
        for key, d in drops.items()
    }


def test_exact_and_fuzzy_dedup_on_real_rows_whatever_the_sharding(fixtures_hf, tmp_path):
    """Planted copies on real rows are found; the decisions do not depend on how the items are cut
    into shards or in which order the shards come (identity and order are the item ids)."""
    rows = [mc_fields(r) for r in fixture_rows(fixtures_hf, "allenai/openbookqa", "main", "train")[:40]]
    hexid = "{:016x}".format
    seeds = [(hexid(1000 + i), hexid(1000 + i), r) for i, r in enumerate(rows[:5])]
    items = [(hexid(i), hexid(1000), r) for i, r in enumerate(rows[5:], start=5)]
    items.append((hexid(500), hexid(1000), dict(rows[10], question=rows[10]["question"].upper() + "  ")))
    items.append((hexid(501), hexid(1001), dict(rows[1])))  # its own seed, verbatim
    opts = rows[7]["options"]
    items.append((hexid(600), hexid(1003), dict(rows[7], options=[*opts[:-1], opts[-1] + " indeed"])))
    seed3_question = rows[3]["question"].rsplit(" ", 1)[0] + " today?"
    items.append((hexid(601), hexid(1003), dict(rows[3], question=seed3_question)))  # near its own seed
    expected = {
        hexid(500): ("exact_duplicate", hexid(10), None),
        hexid(501): ("exact_copy_of_seed", hexid(1001), True),
        hexid(600): ("near_duplicate", hexid(7), None),
        hexid(601): ("near_copy_of_seed", hexid(1003), True),
    }
    settings = _settings()
    assert _resolve(tmp_path, "one", seeds, [items], settings) == expected
    thirds = [items[i::3] for i in range(3)]
    assert _resolve(tmp_path, "three", seeds, thirds[::-1], settings) == expected
    # Off switches: exact only finds the exact copies.
    exact_only = _resolve(tmp_path, "exact", seeds, [items], _settings(fuzzy=False))
    assert exact_only == {k: v for k, v in expected.items() if v[0].startswith("exact")}


def test_fuzzy_dedup_agrees_with_datasketch_lsh(fixtures_hf, tmp_path):
    """Same near-duplicate pairs as datasketch's MinHashLSH + Jaccard check on real rows with
    planted one-word edits (the reference the sharded resolution replaces)."""
    from datasketch import MinHashLSH

    from nemo_taskseed.filter.dedup.sharded import minhash_signatures

    rows = [mc_fields(r) for r in fixture_rows(fixtures_hf, "allenai/ai2_arc", "ARC-Easy", "train")[:150]]
    items = [(f"{i:016x}", "0" * 16, r) for i, r in enumerate(rows)]
    for n, i in enumerate(range(0, 150, 10)):  # 15 near copies: one option word changed
        r = rows[i]
        items.append((f"{10_000 + n:016x}", "0" * 16, dict(r, options=[*r["options"][:-1], r["options"][-1] + " too"])))
    settings = _settings(exact=False)
    ours = _resolve(tmp_path, "lsh", [], [items], settings)

    texts = [" ".join([r["question"], *r["options"]]) for _, _, r in items]
    sigs = minhash_signatures(texts, settings)
    lsh = MinHashLSH(threshold=0.7, num_perm=128)
    from datasketch import MinHash

    kept = {}
    reference = {}
    for (item_id, _, _), sig in sorted(zip(items, sigs), key=lambda p: p[0][0]):
        m = MinHash(num_perm=128, seed=1, hashvalues=sig, scheme="affine32")
        best = max(((m.jaccard(kept[c]), c) for c in lsh.query(m)), default=None)
        if best and best[0] >= 0.7:
            reference[item_id] = best[1]
            continue
        lsh.insert(item_id, m)
        kept[item_id] = m
    assert {k: v[1] for k, v in ours.items()} == reference
    assert len(reference) >= 10  # most planted copies are near enough to be found


def test_the_evidence_n_gram_is_the_same_in_every_run(tmp_path):
    """Several n-grams of one benchmark row match: the one reported is the smallest, whatever the
    process's string-hash seed (it used to follow set order: 33 of 48 reports differed between runs)."""
    import subprocess
    import sys

    script = tmp_path / "evidence.py"
    script.write_text(
        "from nemo_taskseed.filter.decontam import BenchmarkRow, NgramIndex\n"
        "index = NgramIndex(5, short_min_words=0)\n"
        "text = 'the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat'\n"
        "index.add(BenchmarkRow('b', 'test', 0), [text])\n"
        "print(index.check([text]).ngram)\n"
    )
    seen = {
        subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            env={**__import__("os").environ, "PYTHONHASHSEED": str(seed)},
        ).stdout.strip()
        for seed in range(6)
    }
    words = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat".split()
    assert seen == {min(" ".join(words[i : i + 5]) for i in range(len(words) - 4))}


def test_short_test_questions_caught_and_training_items_not_flagged(fixtures_hf):
    """Default short_min_words: every 5-12-word test question inside a longer record is caught; no
    real training item of the same datasets is flagged (the false-positive rate on clean data)."""
    from test_filter_fixtures import gsm8k_fields, make_generated, make_seed

    from nemo_taskseed.config import load_config
    from nemo_taskseed.filter.decontam import build_index
    from nemo_taskseed.filter.text import record_fields_text

    dc = load_config("benchmarks/smoke").filter.decontam
    built = build_index(
        list(dc.benchmarks),
        source="mirror",
        mirror=fixtures_hf,
        short_min_words=int(dc.short_min_words),
        unordered=bool(dc.unordered),
    )
    sources = [
        ("allenai/ai2_arc", "ARC-Easy", "test", mc_fields),
        ("tau/commonsense_qa", "default", "validation", mc_fields),
        ("allenai/openbookqa", "main", "test", mc_fields),
        ("openai/gsm8k", "main", "test", gsm8k_fields),
    ]
    short = [
        f(r)["question"]
        for ds, cfg, split, f in sources
        for r in fixture_rows(fixtures_hf, ds, cfg, split)
        if 5 <= len(f(r)["question"].split()) <= 12
    ]
    assert len(short) == 139
    caught = sum(built.index.check([f"Here is a question. {q} Think about it."]) is not None for q in short)
    assert caught == len(short)
    fields = ["context", "question", "options", "answer_text", "reference", "tests", "enrichment", "text"]
    clean = []
    for ds, cfg, _, f in sources:
        rows = fixture_rows(fixtures_hf, ds, cfg, "train")
        seed = make_seed("x", "x", f(rows[0]), 0)
        clean += [make_generated(seed, f(r), sample_index=i) for i, r in enumerate(rows)]
    assert len(clean) == 800
    assert [r["question"] for r in clean if built.index.check(record_fields_text(r, fields))] == []


def _swap_adjacent(words: list[str], positions: list[int]) -> list[str]:
    out = list(words)
    for i in positions:
        out[i], out[i + 1] = out[i + 1], out[i]
    return out


def test_test_items_with_adjacent_words_swapped_are_caught_in_any_order(fixtures_hf):
    """A copied test question with one to three adjacent words swapped (lower-cased, inside a longer
    record) has no 13-gram left and is no verbatim short string; the order-free keys
    (filter.decontam.unordered) catch it, long and short, and survive the pickle workers read."""
    import pickle
    import random

    rng = random.Random(3)
    rows = fixture_rows(fixtures_hf, "openai/gsm8k", "main", "test")[:40]
    rows += fixture_rows(fixtures_hf, "allenai/ai2_arc", "ARC-Easy", "test")[:40]
    questions = [r["question"] for r in rows]
    ordered, unordered = NgramIndex(13, 5), NgramIndex(13, 5, unordered=True)
    for i, q in enumerate(questions):
        for index in (ordered, unordered):
            index.add(BenchmarkRow("mixed", "test", i), [q])
    unordered = pickle.loads(pickle.dumps(unordered))
    missed_by_order, caught = 0, 0
    for i, q in enumerate(questions):
        words = q.split()
        if len(words) < 6:
            continue
        swaps = sorted(rng.sample(range(len(words) - 1), min(3, (len(words) - 1) // 2)))
        swaps = [p for k, p in enumerate(swaps) if k == 0 or p > swaps[k - 1] + 1]  # disjoint pairs
        record = f"Consider this one. {' '.join(_swap_adjacent(words, swaps)).lower()} Show your work."
        missed_by_order += ordered.check([record]) is None
        hit = unordered.check([record])
        caught += hit is not None and hit.row.row == i
    assert caught == sum(len(q.split()) >= 6 for q in questions) and missed_by_order >= 40
    # Same words, other rows' words: a window must hold the whole bag to match.
    assert unordered.check([" ".join(sorted(set(" ".join(questions).split()))[:200])]) is None


def test_test_items_copied_with_punctuation_as_spaces_are_caught(fixtures_hf):
    """A copy that drops punctuation may write "(0, 0)" as "0 0" and "anti-allergen" as "anti
    allergen"; records are normalized by deleting punctuation ("00"), so the index also holds each
    benchmark string with punctuation as a space. Real rows with punctuation inside words (MMLU
    mathematics, PIQA, GSM8K), upper-cased, punctuation turned into spaces, inside a longer record."""
    from nemo_taskseed.filter.text import normalize_words, split_punctuation_words

    rows = fixture_rows(fixtures_hf, "cais/mmlu", "high_school_mathematics", "test")
    rows += fixture_rows(fixtures_hf, "baber/piqa", "default", "validation")
    rows += fixture_rows(fixtures_hf, "openai/gsm8k", "main", "test")
    questions = [r.get("question") or r.get("goal") for r in rows]
    questions = [q for q in questions if len(q.split()) >= 5 and normalize_words(q) != split_punctuation_words(q)]
    index = NgramIndex(13, 5, unordered=True)
    for i, q in enumerate(questions):
        index.add(BenchmarkRow("mixed", "test", i), [q])
    spaced = [" ".join("".join(ch if ch.isalnum() else " " for ch in q.upper()).split()) for q in questions]
    caught = 0
    for i, copy in enumerate(spaced):
        hit = index.check([f"Consider this one. {copy} Show your work."])
        # (GSM8K's test split holds one question twice: the earlier row is the evidence.)
        caught += hit is not None and normalize_words(questions[hit.row.row]) == normalize_words(questions[i])
    assert len(questions) >= 100 and caught == len(questions)
    # The deleted form still matches; and without the variant most spaced copies had no match.
    assert all(index.check([" ".join(normalize_words(q))]) is not None for q in questions)
    plain = NgramIndex(13, 5, unordered=True)  # rows given with punctuation already deleted: no variant
    for i, q in enumerate(questions):
        plain.add(BenchmarkRow("mixed", "test", i), [" ".join(normalize_words(q))])
    assert sum(plain.check([c]) is None for c in spaced) >= len(questions) // 4  # 34 of 117 measured


def test_rendered_lm_eval_prompts_are_indexed_beside_raw_rows(fixtures_hf):
    """lm-eval's prompt (doc_to_text), choices and target are indexed as well as the raw row: a
    record that copies the rendered prompt of a short item is caught only through that view."""
    from nemo_taskseed.config import load_config
    from nemo_taskseed.filter.decontam import build_index
    from nemo_taskseed.filter.decontam.benchmarks import Benchmark, load_split_rows, scored_splits
    from nemo_taskseed.filter.decontam.render import rendered_rows
    from nemo_taskseed.utils.lm_eval_yaml import template_config

    benches = list(load_config("benchmarks/smoke").filter.decontam.benchmarks)
    full = build_index(benches, source="mirror", mirror=fixtures_hf)
    raw = build_index(benches, source="mirror", mirror=fixtures_hf, rendered=False)
    loaded = [c for c in full.coverage if c.loaded]
    assert all(c.rendered and not c.render_errors for c in loaded), [(c.split, c.render_errors) for c in loaded]
    assert "arc_easy" in next(c for c in loaded if c.split == "allenai/ai2_arc/ARC-Easy:test").rendered
    escaped = caught = 0
    for split in scored_splits([Benchmark.from_config(b) for b in benches]):
        _, rows = load_split_rows(split, "mirror", fixtures_hf)
        if rows is None:
            continue
        for doc in rendered_rows(template_config(split.renderings[0]["path"]), list(rows)):
            if raw.index.check(doc.prompt[:1]) is None:  # the prompt alone, as lm-eval shows it
                escaped += 1
                caught += full.index.check(doc.prompt[:1]) is not None
    # Measured on the fixture rows: 36 of 1,200 rendered prompts share nothing with the raw index
    # (short questions wrapped in "Question: ... Answer:"); 14 of them are caught through the view.
    assert (escaped, caught) == (36, 14)
    hit = full.index.check(["Question: What causes sound?\nAnswer:"])
    assert raw.index.check(["Question: What causes sound?\nAnswer:"]) is None
    assert (hit.row.split, hit.row.row, hit.row.view) == ("allenai/ai2_arc/ARC-Easy:test", 29, "rendered:arc_easy")


def test_gpu_dedup_input_and_removal_ids_on_cpu(tmp_path, fixtures_hf):
    """The CPU side of `filter.dedup.backend: gpu` (filter/dedup/gpu.py): the `{id, text}` input
    Curator's cudf workflows read, holding the same normalized text the CPU dedup compares, and the
    removal ids read back from the parquet files they write. The workflows themselves need cudf and
    a GPU: here, where cudf is absent, asking for them is a clear error, not a traceback."""
    import importlib.util
    import json

    import pandas as pd
    import pytest

    from nemo_taskseed.errors import UserError
    from nemo_taskseed.filter.dedup import gpu
    from nemo_taskseed.filter.text import normalize_text

    rows = fixture_rows(fixtures_hf, "allenai/ai2_arc", "ARC-Easy", "train")[:3]
    records = [mc_fields(r) for r in rows]
    shouted = {**records[0], "question": records[0]["question"].upper() + "  "}
    items = [("a", records[0]), ("b", records[1]), ("seed:s0", shouted), ("c", records[2])]
    path = gpu.write_dedup_input(tmp_path / "input", items, ["question", "options"])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["a", "b", "seed:s0", "c"]
    assert lines[0]["text"] == lines[2]["text"]  # case and spacing do not make a new item
    assert lines[0]["text"] == normalize_text(" ".join([records[0]["question"], *records[0]["options"]]))
    assert len({line["text"] for line in lines}) == 3

    # The workflows write the ids to remove as parquet parts under their output folder.
    (tmp_path / "exact" / "ExactDuplicateIds").mkdir(parents=True)
    pd.DataFrame({"id": ["a"]}).to_parquet(tmp_path / "exact" / "ExactDuplicateIds" / "part.0.parquet")
    pd.DataFrame({"id": ["c", "seed:s0"]}).to_parquet(tmp_path / "exact" / "ExactDuplicateIds" / "part.1.parquet")
    assert gpu.removal_ids(tmp_path / "exact") == {"a", "c", "seed:s0"}
    assert gpu.removal_ids(tmp_path / "nothing_written") == set()

    if importlib.util.find_spec("cudf") is None:
        with pytest.raises(UserError, match=r"filter.dedup.backend=gpu needs Curator's GPU extras \(cudf\)"):
            gpu.exact_workflow(tmp_path / "input", tmp_path / "exact")
        with pytest.raises(UserError, match="cudf"):
            gpu.fuzzy_workflow(tmp_path / "input", tmp_path / "fuzzy", tmp_path / "cache", {})
