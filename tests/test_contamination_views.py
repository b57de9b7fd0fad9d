"""What the semantic check embeds and how it decides, without a model: benchmark views from lm-eval's
rendering of real fixture rows, item windows, the band rule, per-benchmark levels, the reviewable
report, and the frozen calibration set's integrity (every rewrite far from its source in words)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from nemo_taskseed.config import load_config, to_container
from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.decontam.ngrams import BenchmarkRow
from nemo_taskseed.filter.decontam.render import RenderedDoc, rendered_rows
from nemo_taskseed.filter.semantic.check import Match, SemanticSettings, anchor_share, decide
from nemo_taskseed.filter.semantic.index import SemanticHit
from nemo_taskseed.filter.semantic.views import benchmark_views, item_windows, sentences

REPO = Path(__file__).resolve().parents[1]


def _base() -> dict:
    return to_container(load_config())["filter"]["decontam"]["semantic"]


def _settings(**changes) -> SemanticSettings:
    return SemanticSettings.from_config({**_base(), **changes})


def _rows(fixtures_hf: Path, *parts: str) -> list[dict]:
    path = fixtures_hf.joinpath(*parts)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_boolq_is_embedded_with_its_passage_as_lm_eval_shows_it(fixtures_hf):
    """The issue's finding: a passage benchmark's question alone is a stem; the row is embedded as
    lm-eval's prompt (passage + question), rendered by the task's own template."""
    from nemo_taskseed.filter.decontam.benchmarks import Benchmark, scored_splits
    from nemo_taskseed.utils.lm_eval_yaml import template_config

    rows = _rows(fixtures_hf, "aps", "super_glue", "boolq", "validation.jsonl")[:3]
    split = scored_splits([Benchmark("boolq", ("super_glue/boolq",))])[0]
    docs = list(rendered_rows(template_config(split.renderings[0]["path"]), rows))
    views = dict(benchmark_views(rows[0], docs[0]))
    assert rows[0]["passage"][:40] in views["prompt"] and rows[0]["question"] in views["prompt"]
    assert "Question:" not in views["prompt"] and not views["prompt"].endswith("Answer:")
    assert "qa" not in views  # a yes/no answer makes no question specific


def test_mmlu_core_view_drops_the_lettered_options_and_short_rows_get_their_answer():
    doc = RenderedDoc(["What is 2 + 2 in base 3?\nA. 11\nB. 4\nC. 10\nD. 2\nAnswer:"], ["A", "B", "C", "D"], ["A"])
    views = dict(benchmark_views({"question": "What is 2 + 2 in base 3?"}, doc))
    assert views["prompt"] == "What is 2 + 2 in base 3? A. 11 B. 4 C. 10 D. 2"
    assert views["core"] == "What is 2 + 2 in base 3?"
    assert "qa" not in views  # the answer is a letter
    nq = RenderedDoc(["Q: who wrote the novel moby dick\nA:"], [], ["Herman Melville"])
    views = dict(benchmark_views({"question": "who wrote the novel moby dick"}, nq))
    assert views["qa"] == "who wrote the novel moby dick Herman Melville"
    # Without a rendering, the raw row: passage first, then the question, options sorted.
    raw = dict(benchmark_views({"context": "Sasha gave the dog a bath.", "question": "How would you describe Sasha?"}))
    assert raw["prompt"] == "Sasha gave the dog a bath. How would you describe Sasha?"


def test_item_windows_find_a_test_item_between_a_lead_in_and_a_closing():
    ws = _settings().windows
    record = {
        "question": "Here is a warm-up for the quiz. Janet's ducks lay 16 eggs a day. She eats three. "
        "How much does she make? Explain each step.",
        "options": ["$18", "$20"],
        "context": None,
    }
    windows = dict(item_windows(record, ws))
    assert list(windows)[0] == "item" and windows["item"].endswith("| $18 | $20")
    assert windows["question"] == " ".join(record["question"].split())
    inner = "Janet's ducks lay 16 eggs a day. She eats three. How much does she make?"
    assert inner in windows.values()  # one sentence cut from each end
    # A one-sentence question costs no windows beyond the item and the question alone.
    assert len(item_windows({"question": "Which gas do plants absorb?", "options": ["CO2", "O2"]}, ws)) == 2
    assert sentences("It rained. Then it stopped!  Why?\nDone") == ["It rained.", "Then it stopped!", "Why?", "Done"]


def test_decide_uses_per_benchmark_levels_and_the_band_rule():
    s = _settings(threshold=0.85, review_threshold=0.7, per_benchmark={"mbpp": {"threshold": 0.95}})

    def match(bench, score, text="Janet has 16 ducks and 3 hens", window="Janet keeps 16 ducks and 3 hens"):
        return Match(SemanticHit(BenchmarkRow(bench, f"{bench}:test", 0), text, score), "item", window)

    assert decide([match("arc", 0.86)], s)[1] == "above_threshold"
    assert decide([match("mbpp", 0.9)], s)[1] in ("band_rule", "band_kept")  # mbpp drops only at 0.95
    assert decide([match("arc", 0.6)], s) is None
    # Numbers decide the band for word problems: all quantities kept -> dropped.
    assert decide([match("gsm8k", 0.75)], s)[1] == "band_rule"
    got = decide([match("gsm8k", 0.75, window="Tom buys 4 apples and 9 pears")], s)
    assert got[1] == "band_kept" and got[2]["anchor_share"] == 0.0
    assert anchor_share("Janet has 16 ducks and 3 hens", "16 ducks, 3 hens") == 1.0
    judged = _settings(
        review_threshold=0.7, judge={**_base()["judge"], "enabled": True, "backend": {"kind": "openai", "model": "m"}}
    )
    assert decide([match("arc", 0.75)], judged)[1] == "band"


def test_semantic_settings_name_bad_levels():
    with pytest.raises(UserError, match=r"per_benchmark\.mbpp: unknown key\(s\) \['treshold'\]"):
        _settings(per_benchmark={"mbpp": {"treshold": 0.9}})
    with pytest.raises(UserError, match=r"review_threshold must be in \(0, threshold\]"):
        _settings(threshold=0.8, review_threshold=0.9)
    with pytest.raises(Exception, match="windows"):
        _settings(windows={**_base()["windows"], "max_trims": 1})


def test_a_judge_without_a_backend_is_refused_before_any_shard_runs():
    from nemo_taskseed.config import load_config
    from nemo_taskseed.filter.settings import FilterSettings

    with pytest.raises(UserError, match=r"judge\.enabled is true but judge\.backend is not set"):
        FilterSettings.from_config(load_config(None, ["filter.decontam.semantic.judge.enabled=true"]))
    on = "filter.decontam.semantic.judge.backend={kind: openai, model: judge}"
    cfg = FilterSettings.from_config(load_config(None, ["filter.decontam.semantic.judge.enabled=true", on]))
    assert cfg.semantic.judge_enabled and cfg.semantic.judge["backend"]["kind"] == "openai"
    # A judge left on under a semantic check that is off asks nothing, so it is not refused.
    off = ["filter.decontam.semantic.judge.enabled=true", "filter.decontam.semantic.enabled=false"]
    assert not FilterSettings.from_config(load_config(None, off)).semantic_decontam_on


def test_contamination_markdown_lists_worst_cases_first():
    from nemo_taskseed.filter.report import contamination_markdown, contamination_report

    common = {"family": "arc", "seed_id": "s", "stage": "semantic_decontam", "reason": "benchmark_paraphrase"}
    records = [
        {
            **common,
            "id": "a",
            "benchmark": "arc",
            "split": "x:test",
            "row": 1,
            "score": 0.81,
            "verdict": "above_threshold",
            "item_text": "mild",
            "benchmark_text": "b1",
            "window": "question",
            "threshold": 0.8,
            "review_threshold": 0.7,
        },
        {
            **common,
            "id": "b",
            "benchmark": "arc",
            "split": "x:test",
            "row": 2,
            "score": 0.97,
            "verdict": "above_threshold",
            "item_text": "worst",
            "benchmark_text": "b2",
            "window": "question[1:3]",
            "threshold": 0.8,
            "review_threshold": 0.7,
        },
        {
            **common,
            "id": "c",
            "benchmark": "arc",
            "split": "x:test",
            "row": 3,
            "score": 0.75,
            "verdict": "band_kept",
            "reason": "kept_in_review",
            "item_text": "kept",
            "benchmark_text": "b3",
            "anchor_share": 0.2,
        },
        {
            **common,
            "id": "d",
            "stage": "decontam",
            "reason": "benchmark_overlap",
            "benchmark": "gsm8k",
            "split": "g:test",
            "row": 0,
            "ngram": "janet s ducks lay 16 eggs",
            "n_matching_ngrams": 4,
        },
    ]
    text = contamination_markdown(contamination_report(records, [], {}))
    order = [text.index(s) for s in ("janet s ducks", "> worst", "> mild", "> kept")]
    assert order == sorted(order)
    assert "item window `question[1:3]`" in text and "| arc | 2 | 1 | 0 |" in text


def _calibration():
    spec = importlib.util.spec_from_file_location("calibration", REPO / "bench" / "calibration.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_calibration_set_is_far_from_its_sources_and_split_in_halves(fixtures_hf, tmp_path):
    cal = _calibration()
    positives = cal.load_positives(fixtures_hf)
    assert len(positives) >= 300 and len({p.group for p in positives}) >= 8
    report = [p for p in positives if p.half == "report"]
    assert len(report) >= 100 and len({p.group for p in report}) >= 6 and any(p.group == "boolq" for p in report)
    assert {p.style for p in positives} == set(cal.STYLES)
    # A rewrite that copies its source is refused, naming the file and the line.
    line = json.loads((cal.CALIBRATION_DIR / "gsm8k.jsonl").read_text().splitlines()[0])
    row = cal.mirror_rows(fixtures_hf, "openai/gsm8k", "main", "test")[line["source"]["row"]]
    (tmp_path / "bad.jsonl").write_text(json.dumps({**line, "question": row["question"]}) + "\n")
    with pytest.raises(cal.CalibrationError, match=r"bad.jsonl:1: rewrite too close to its source row"):
        cal.load_positives(fixtures_hf, tmp_path)
