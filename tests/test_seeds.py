"""Seed collection and normalization on real benchmark rows (../shared/fixtures/hf), stage by stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nemo_taskseed.catalog import load_catalog_rows
from nemo_taskseed.config import load_config, to_container
from nemo_taskseed.schema import validate_seed
from nemo_taskseed.seeds import collect_seeds
from nemo_taskseed.seeds.normalize import ROW_COLUMN, FieldRules, LmEvalTemplates
from nemo_taskseed.seeds.source import sample_rows


def run_stages_in_process(tasks: list[str], mirror: Path, out: Path, **overrides) -> dict:
    """The real Curator pipeline on the in-process executor (no Ray start-up per test)."""
    cfg = load_config(overrides=[f"seeds.{k}={v}" for k, v in overrides.items()])
    rows = load_catalog_rows(cfg.catalog, tasks, dedup_sources=bool(cfg.seeds.dedup_sources))
    return collect_seeds(rows, cfg.seeds, out, mirror=str(mirror), executor_name="inline")


def source_rows(fixtures: Path, rel: str) -> list[dict]:
    return [json.loads(line) for line in (fixtures / rel).read_text().splitlines()]


def seeds_of(out: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"seeds.{task}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def normalized(fixtures_hf, tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds")
    summary = run_stages_in_process(
        ["arc_easy", "commonsense_qa", "openbookqa", "gsm8k", "mbpp", "mmlu_anatomy", "mmlu_high_school_mathematics"],
        fixtures_hf,
        out,
        max_per_subtask="null",
    )
    return out, summary


def test_every_row_kept_and_schema_valid(normalized):
    out, summary = normalized
    assert summary["rejected"] == 0, summary["rejected_by_reason"]
    assert summary["per_task"]["arc_easy"]["kept"] == 200
    assert summary["per_task"]["mmlu_anatomy"]["kept"] == 5
    # The catalog's answer check travels with the seeds (the filter reads it from this summary).
    assert summary["per_task"]["gsm8k"]["verifier"] == "math"
    assert summary["per_task"]["arc_easy"]["verifier"] == "multiple_choice"
    for path in out.glob("seeds.*.jsonl"):
        for line in path.read_text().splitlines():
            assert validate_seed(json.loads(line)) == []


@pytest.mark.parametrize(
    "task,rel,question_key",
    [
        ("arc_easy", "allenai/ai2_arc/ARC-Easy/train.jsonl", "question"),
        ("commonsense_qa", "tau/commonsense_qa/default/train.jsonl", "question"),
        ("openbookqa", "allenai/openbookqa/main/train.jsonl", "question_stem"),
    ],
)
def test_labelled_choice_tasks_match_source_field_for_field(normalized, fixtures_hf, task, rel, question_key):
    out, _ = normalized
    records = {r["source"]["row"]: r for r in seeds_of(out, task)}
    for row_index, src in enumerate(source_rows(fixtures_hf, rel)):
        rec = records[row_index]
        assert rec["question"] == src[question_key].strip()
        assert rec["options"] == src["choices"]["text"]
        answer = src["choices"]["label"].index(src["answerKey"].strip())
        assert rec["answer_index"] == answer
        assert rec["answer_text"] == src["choices"]["text"][answer]  # semantic text, not the letter
        assert rec["format"] == "multiple_choice" and rec["split"] == "train"
        assert rec["source"]["dataset_path"] == rel.split("/")[0] + "/" + rel.split("/")[1]


def test_mmlu_letter_choices_resolve_to_option_text(normalized, fixtures_hf):
    out, _ = normalized
    for task, subject in (("mmlu_anatomy", "anatomy"), ("mmlu_high_school_mathematics", "high_school_mathematics")):
        records = {r["source"]["row"]: r for r in seeds_of(out, task)}
        for i, src in enumerate(source_rows(fixtures_hf, f"cais/mmlu/{subject}/dev.jsonl")):
            rec = records[i]
            assert rec["question"] == src["question"].strip()
            assert rec["options"] == src["choices"]
            assert rec["answer_index"] == src["answer"]
            assert rec["answer_text"] == src["choices"][src["answer"]]
            assert rec["kind"] == "knowledge" and rec["split"] == "dev"


def test_generative_tasks_keep_reference_and_raw(normalized, fixtures_hf):
    out, _ = normalized
    gsm = {r["source"]["row"]: r for r in seeds_of(out, "gsm8k")}
    for i, src in enumerate(source_rows(fixtures_hf, "openai/gsm8k/main/train.jsonl")):
        assert gsm[i]["question"] == src["question"]
        assert gsm[i]["answer_text"] == src["answer"] and gsm[i]["options"] is None
        assert gsm[i]["prompt"] == f"Question: {src['question']}\nAnswer:"
    mbpp = {r["source"]["row"]: r for r in seeds_of(out, "mbpp")}
    for i, src in enumerate(source_rows(fixtures_hf, "google-research-datasets/mbpp/full/train.jsonl")):
        assert mbpp[i]["question"] == src["text"].strip()
        # lm-eval's mbpp target is the tests; the reference solution stays in `raw`.
        assert mbpp[i]["answer_text"] == "\n".join(src["test_list"][:3])
        assert mbpp[i]["raw"]["code"] == src["code"]
        assert mbpp[i]["license"] == "cc-by-4.0"


def test_passage_becomes_context(fixtures_hf):
    """boolq's only fixture split is scored (so never seeds); normalization itself still applies."""
    rows = load_catalog_rows(load_config().catalog, ["boolq"])
    cat = {**rows[0], "split": "validation"}
    src = source_rows(fixtures_hf, "aps/super_glue/boolq/validation.jsonl")[:20]
    rules = FieldRules.from_config(to_container(load_config().seeds))
    templates = LmEvalTemplates(cat, [{**d, ROW_COLUMN: i} for i, d in enumerate(src)], rules)
    for i, doc in enumerate(templates.processed_docs()):
        rec = templates.normalize(doc)
        assert rec["question"] == src[i]["question"].strip()
        assert rec["context"] == src[i]["passage"].strip()
        assert rec["options"] == ["no", "yes"] and rec["answer_text"] == ["no", "yes"][src[i]["label"]]


def test_bad_input_is_rejected_with_reason_and_the_rest_kept(fixtures_hf, tmp_path):
    mirror = tmp_path / "mirror"
    arc = mirror / "allenai/ai2_arc/ARC-Easy/train.jsonl"
    arc.parent.mkdir(parents=True)
    good = source_rows(fixtures_hf, "allenai/ai2_arc/ARC-Easy/train.jsonl")[:6]
    missing = {k: v for k, v in good[2].items() if k != "answerKey"}
    bad_key = {**good[3], "answerKey": "Z"}  # the template's label.index() fails
    lines = [
        json.dumps(good[0]),
        "{not json",
        json.dumps(missing),
        json.dumps(bad_key),
        json.dumps(good[4]),
        json.dumps(good[5]),
    ]
    arc.write_text("\n".join(lines) + "\n")
    mmlu = mirror / "cais/mmlu/anatomy/dev.jsonl"
    mmlu.parent.mkdir(parents=True)
    rows = source_rows(fixtures_hf, "cais/mmlu/anatomy/dev.jsonl")
    rows[1]["answer"] = 7
    mmlu.write_text("".join(json.dumps(r) + "\n" for r in rows))

    out = tmp_path / "out"
    summary = run_stages_in_process(["arc_easy", "mmlu_anatomy", "arc_challenge"], mirror, out)
    assert summary["per_task"]["arc_easy"]["kept"] == 3
    assert summary["per_task"]["mmlu_anatomy"]["kept"] == 4
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert all(r["stage"] == "seeds" for r in rejected)  # the one rejected-line shape (schema/rejected.py)
    by_reason = {(r["task"], r["reason"]): r for r in rejected}
    assert by_reason[("arc_easy", "malformed_row")]["detail"].startswith("line 2:")
    assert by_reason[("arc_easy", "malformed_row")]["file"] == str(arc)
    assert by_reason[("arc_easy", "missing_field")]["field"] == "answerKey"
    assert by_reason[("arc_easy", "missing_field")]["row"] == 2
    assert by_reason[("arc_easy", "template_error")]["row"] == 3
    assert by_reason[("mmlu_anatomy", "answer_out_of_range")]["field"] == "answer_index"
    assert ("arc_challenge", "source_unavailable") in by_reason  # no such file in this mirror
    assert summary["incomplete_subtasks"] == ["arc_challenge"]
    assert summary["rejected_by_reason"]["malformed_row"] == 1


def test_cap_samples_deterministically_and_stably():
    rows = [(i, {"x": i}) for i in range(1000)]
    first = sample_rows(rows, 50, seed=7, task="t")
    assert first == sample_rows(rows, 50, seed=7, task="t")
    assert len(first) == 50 and first != sample_rows(rows, 50, seed=8, task="t")
    # Appending rows can only let new rows in: no old row swaps places with another old row.
    grown = sample_rows(rows + [(i, {"x": i}) for i in range(1000, 1100)], 50, seed=7, task="t")
    assert len({i for i, _ in first} - {i for i, _ in grown}) == len({i for i, _ in grown if i >= 1000})


def test_capped_subtask(fixtures_hf, tmp_path):
    summary = run_stages_in_process(["gsm8k"], fixtures_hf, tmp_path, max_per_subtask=25)
    assert summary["per_task"]["gsm8k"]["kept"] == 25


def test_a_question_that_repeats_its_context_is_separated_from_it():
    """Dialogue tasks render the whole dialogue as the prompt: question != context afterwards."""
    from nemo_taskseed.seeds.normalize import separate_question_from_context

    dialogue = "A: Hi, I lost my keys.\nB: Where did you last see them?\nA: On the kitchen table, I think."
    # The prompt is the dialogue itself: the last turn is the question, the turns before the context.
    q, c = separate_question_from_context(dialogue, dialogue)
    assert q == "A: On the kitchen table, I think." and c == dialogue.rsplit("\n", 1)[0] and q != c
    # The prompt adds a question to the dialogue: that addition is the question.
    q, c = separate_question_from_context(f"{dialogue}\nQuestion: What should B say next?\nAnswer:", dialogue)
    assert q == "What should B say next?" and c == dialogue
    # A question that does not repeat its context is left alone.
    assert separate_question_from_context("Who wrote it?", "A passage.") == ("Who wrote it?", "A passage.")


def test_two_subtasks_on_one_source_seed_once(fixtures_hf, tmp_path):
    """gsm8k and gsm8k_cot_zeroshot read openai/gsm8k main:train (only the prompt differs): asked for
    both, the rows seed once under the canonical task and the other is recorded as its alias."""
    summary = run_stages_in_process(["gsm8k_cot_zeroshot", "gsm8k"], fixtures_hf, tmp_path, max_per_subtask="null")
    assert sorted(p.name for p in tmp_path.glob("seeds*.jsonl")) == ["seeds.gsm8k.jsonl"]
    assert summary["subtasks"] == 1 and summary["kept"] == 200
    assert summary["aliases"] == {"gsm8k_cot_zeroshot": "gsm8k"}
    assert summary["per_task"]["gsm8k"]["aliases"] == ["gsm8k_cot_zeroshot"]
    # Switched off, each subtask seeds on its own (and the content dedup then drops the copies).
    off = run_stages_in_process(
        ["gsm8k_cot_zeroshot", "gsm8k"], fixtures_hf, tmp_path / "off", max_per_subtask=20, dedup_sources="false"
    )
    assert off["subtasks"] == 2 and off["aliases"] == {}
    # 20 rows sampled per subtask (the sample hash includes the task): the rows both drew are kept once.
    kept = off["per_task"]["gsm8k_cot_zeroshot"]["kept"] + off["per_task"]["gsm8k"]["kept"]
    assert 20 <= kept < 40 and off["rejected_by_reason"] == {"duplicate_seed": 40 - kept}
    rows = [r["source"]["row"] for t in ("gsm8k_cot_zeroshot", "gsm8k") for r in seeds_of(tmp_path / "off", t)]
    assert len(rows) == len(set(rows)) == kept


def test_identical_seeds_across_subtasks_are_kept_once(fixtures_hf, tmp_path):
    """Two sources holding some of the same rows (ARC-Challenge here carries 5 ARC-Easy rows): the
    copies are dropped from the later subtask as duplicate_seed, naming the kept one."""
    mirror = tmp_path / "mirror"
    easy = source_rows(fixtures_hf, "allenai/ai2_arc/ARC-Easy/train.jsonl")[:10]
    for config, rows in (
        ("ARC-Easy", easy),
        ("ARC-Challenge", easy[:5] + source_rows(fixtures_hf, "allenai/ai2_arc/ARC-Easy/train.jsonl")[50:55]),
    ):
        path = mirror / "allenai/ai2_arc" / config / "train.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    summary = run_stages_in_process(["arc_easy", "arc_challenge"], mirror, out, max_per_subtask="null")
    assert summary["per_task"]["arc_easy"]["kept"] == 10
    assert summary["per_task"]["arc_challenge"]["kept"] == 5
    assert summary["rejected_by_reason"] == {"duplicate_seed": 5}
    dropped = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert {d["row"] for d in dropped} == {0, 1, 2, 3, 4} and all("arc_easy row" in d["detail"] for d in dropped)
    assert len(seeds_of(out, "arc_challenge")) == 5
    questions = [r["question"] for t in ("arc_easy", "arc_challenge") for r in seeds_of(out, t)]
    assert len(questions) == len(set(questions)) == 15
    # A rerun resumes both subtasks and decides the same.
    again = run_stages_in_process(["arc_easy", "arc_challenge"], mirror, out, max_per_subtask="null")
    assert again["resumed_subtasks"] == 2 and again["rejected_by_reason"] == {"duplicate_seed": 5}


def _row(task, family, kind, role="training_split"):
    return {"task": task, "family": family, "kind": kind, "split_role": role}


def test_targets_allocate_max_min_fair_over_families_then_subtasks():
    from nemo_taskseed.seeds.targets import Targets, allocate, fair_share

    assert fair_share([5, 100, 100], 105) == [5, 50, 50]
    assert sum(fair_share([3, 4], 100)) == 7
    rows = [
        _row("arc_easy", "arc", "knowledge"),
        _row("arc_de", "arc", "knowledge"),
        _row("sciq", "sciq", "knowledge"),
        _row("mmlu_anatomy", "mmlu", "knowledge", "fewshot_split"),
        _row("gsm8k", "gsm8k", "reasoning"),
        _row("mgsm_de", "gsm8k", "reasoning"),
        _row("piqa", "piqa", "reasoning"),
    ]
    sizes = {
        "arc_easy": 2000,
        "arc_de": 100,
        "sciq": 10_000,
        "mmlu_anatomy": 5,
        "gsm8k": 7000,
        "mgsm_de": 8,
        "piqa": 16_000,
    }
    plan = allocate(rows, sizes, Targets({"knowledge": 3000, "reasoning": 1500}), max_per_subtask=5000)
    q = plan["per_task"]
    # knowledge: arc and sciq 1500 each (arc_de has 100, arc_easy takes the rest); the dev split is not needed.
    assert (q["arc_easy"], q["arc_de"], q["sciq"], q["mmlu_anatomy"]) == (1400, 100, 1500, 0)
    # reasoning: gsm8k family 750 (mgsm_de all its 8), piqa 750; the big families do not take more.
    assert (q["gsm8k"], q["mgsm_de"], q["piqa"]) == (742, 8, 750)
    assert plan["kinds"]["knowledge"] == {"target": 3000, "seeds": 3000, "from_fewshot": 0}
    # A target the training splits cannot meet draws on the few-shot split, then says what is short.
    plan = allocate(rows, sizes, Targets({"knowledge": 20_000}), max_per_subtask=5000)
    assert plan["per_task"]["mmlu_anatomy"] == 5 and plan["kinds"]["knowledge"]["seeds"] == 2000 + 100 + 5000 + 5
    assert any("knowledge: 7,105 seeds available of the 20,000" in n for n in plan["notes"])
    assert plan["per_task"]["gsm8k"] == 5000  # no reasoning target: max_per_subtask as before
    # A family's own target, and a floor per subtask.
    plan = allocate(rows, sizes, Targets({"reasoning": 1000}, {"gsm8k": 100}, min_per_subtask=10), max_per_subtask=None)
    q = plan["per_task"]
    assert q["gsm8k"] + q["mgsm_de"] == 100 and q["mgsm_de"] == 8 and q["piqa"] == 900
    assert plan["families"]["gsm8k"]["target"] == 100


def test_targets_drive_the_pipeline_and_the_plan_cli(fixtures_hf, tmp_path, capsys):
    from nemo_taskseed.cli import main

    tasks = ["arc_easy", "openbookqa", "mmlu_anatomy", "gsm8k", "commonsense_qa"]
    summary = run_stages_in_process(
        tasks, fixtures_hf, tmp_path, **{"targets.knowledge": 250, "targets.reasoning": 300, "max_per_subtask": 1000}
    )
    kept = {t: v["kept"] for t, v in summary["per_task"].items()}
    # 200 rows per training split in the fixtures: knowledge 125 + 125, reasoning 150 + 150, no dev split read.
    assert kept == {"arc_easy": 125, "openbookqa": 125, "gsm8k": 150, "commonsense_qa": 150}
    assert summary["allocation"]["kinds"]["knowledge"]["seeds"] == 250
    assert (
        main(
            [
                "seeds",
                "--plan",
                "--mirror",
                str(fixtures_hf),
                "--tasks",
                ",".join(tasks),
                "seeds.targets.knowledge=420",
                "seeds.targets.reasoning=300",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    # arc and openbookqa give their 200 each; only then mmlu_anatomy's 5-row dev split is drawn on.
    assert "seed targets by kind" in out and "405 seeds available of the 420" in " ".join(out.split())


def test_subtasks_resume_from_their_shard_markers_and_leave_with_their_files(fixtures_hf, tmp_path):
    """One shard per subtask through the shard driver (pipeline/driver.py): its parts and done
    marker `shards/<task>.json`; a rerun skips it, `resume=false` redoes it, and a subtask no
    longer asked for takes its parts and marker with it."""
    out = tmp_path / "out"
    first = run_stages_in_process(["arc_easy", "openbookqa"], fixtures_hf, out, max_per_subtask=5)
    marker = json.loads((out / "shards" / "arc_easy.json").read_text())
    assert marker["schema"] == "taskseed.shard/1" and (marker["task"], marker["kept"]) == ("arc_easy", 5)
    assert (out / "kept" / "part-arc_easy.jsonl").is_file() and (out / "rejected" / "part-arc_easy.jsonl").is_file()
    assert first["resumed_subtasks"] == 0 and first["kept"] == 10
    before = (out / "seeds.arc_easy.jsonl").read_bytes()
    written = (out / "shards" / "arc_easy.json").stat().st_mtime_ns

    again = run_stages_in_process(["arc_easy"], fixtures_hf, out, max_per_subtask=5)
    assert again["resumed_subtasks"] == 1 and again["kept"] == 5
    assert (out / "shards" / "arc_easy.json").stat().st_mtime_ns == written  # not run again
    assert not (out / "shards" / "openbookqa.json").exists() and not (out / "kept" / "part-openbookqa.jsonl").exists()

    forced = run_stages_in_process(["arc_easy"], fixtures_hf, out, max_per_subtask=5, resume="false")
    assert forced["resumed_subtasks"] == 0 and (out / "seeds.arc_easy.jsonl").read_bytes() == before
    changed = run_stages_in_process(["arc_easy"], fixtures_hf, out, max_per_subtask=4)
    assert changed["resumed_subtasks"] == 0 and changed["kept"] == 4


def test_conformed_rows_keep_their_own_key_order():
    """Seeds are the same bytes in every process: the kept row's keys follow the row, not the
    iteration order of a frozenset (string hashes change with PYTHONHASHSEED)."""
    from nemo_taskseed.seeds.source import conform_rows

    keys = ["question", "choices", "answerKey", "id", "extra_field_zeta", "alpha"]
    rows = [(i, {k: f"{k}{i}" for k in keys}) for i in range(3)]
    kept = conform_rows(rows, "split.jsonl").rows
    assert [list(row) for _, row in kept] == [keys] * 3
