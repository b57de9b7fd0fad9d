"""`taskseed export`: a finished run's curated records as a Hugging Face dataset folder.

The run is built here from real benchmark rows (../shared/fixtures/hf): seeds from
`fixture_seeds`, generated records shaped as the generator writes them (rendered with
`generate.render`), then the real filter step publishes the curated set the export reads. No
model runs; the embedding stages are off. The fixture tasks' licenses differ (ARC cc-by-sa-4.0,
CommonsenseQA and GSM8K mit, MBPP cc-by-4.0), which is the mixed-license case.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_filter_fixtures import LETTERS, NO_EMBEDDING_STAGES, fixture_rows, gsm8k_fields, mbpp_fields, mc_fields

from nemo_taskseed.config import load_config, to_container
from nemo_taskseed.errors import UserError
from nemo_taskseed.export.dataset import FORMATS, ShardWriter, record_to_row, row_to_record
from nemo_taskseed.export.license import LicenseRules, decide
from nemo_taskseed.export.step import export_run
from nemo_taskseed.pipeline.shards import read_part_records
from nemo_taskseed.schema.records import content_id

# task -> (family, dataset_path, config, kind, template, fields of a row)
TASKS = {
    "arc_easy": ("arc", "allenai/ai2_arc", "ARC-Easy", "knowledge", "multiple_choice", mc_fields),
    "commonsense_qa": ("commonsense_qa", "tau/commonsense_qa", "default", "knowledge", "multiple_choice", mc_fields),
    "gsm8k": ("gsm8k", "openai/gsm8k", "main", "reasoning", "math_word_problem", gsm8k_fields),
    "mbpp": ("mbpp", "google-research-datasets/mbpp", "full", "reasoning", "code_with_tests", mbpp_fields),
}
SAMPLING = {"n": 2, "temperature": 0.8, "top_p": 0.95, "max_tokens": 384, "seed": 0}


def _enrichment(item: dict[str, Any]) -> dict[str, Any]:
    """An enrichment as the enrich pass writes it (reasoning, alternatives, knowledge, lineage)."""
    if item["format"] == "multiple_choice":
        label = item["answer_index"]
        reasoning = (
            f"Looking at each choice in turn, only {item['options'][label]!r} is consistent with what the "
            f"question describes. Therefore the answer is {LETTERS[label]}."
        )
        alternatives = [
            {"option": LETTERS[i], "why_wrong": "It does not fit the situation described, so it cannot be right."}
            for i in range(len(item["options"]))
            if i != label
        ]
    else:
        reasoning = f"Work through the problem one quantity at a time, then check the result: {item['answer_text']}."
        alternatives = [{"option": None, "why_wrong": "Stopping after the first step leaves the total unfinished."}]
    raw = json.dumps({"reasoning": reasoning, "alternatives": alternatives})
    return {
        "reasoning": reasoning,
        "alternatives": alternatives,
        "knowledge": "Careful readers compare every option against the facts the question states.",
        "lineage": {
            "template_id": "enrich",
            "template_version": "1",
            "model": "SmolLM2-135M-Instruct",
            "backend": "vllm",
            "sampling": {"n": 1, "temperature": 0.3, "top_p": 0.95, "max_tokens": 512, "seed": 0},
            "request_key": hashlib.sha256(raw.encode()).hexdigest(),
            "raw_output": raw,
        },
    }


def _records(seed: dict[str, Any], fields: dict[str, Any], sample_index: int, *, old_lineage: bool) -> list[dict]:
    """The records the generator writes for one item: one per variant, with its lineage."""
    from nemo_taskseed.generate.render import render_text

    family, _, _, kind, template, _ = TASKS[seed["task"]]
    fmt = "multiple_choice" if fields.get("options") else "generative"
    item = {
        "family": family,
        "task": seed["task"],
        "question": fields["question"],
        "context": None,
        "options": fields.get("options"),
        "answer_index": fields.get("answer_index"),
        "answer_text": fields["answer_text"],
        "reference": fields.get("reference"),
        "tests": fields.get("tests"),
    }
    item_id = content_id(*item.values())
    raw = json.dumps({"question": item["question"], "correct_answer": item["answer_text"]})
    lineage: dict[str, Any] = {
        "seed_id": seed["id"],
        "seed_task": seed["task"],
        "item_id": item_id,
        "template_id": template,
        "template_version": "2",
        "model": "SmolLM2-135M-Instruct",
        "backend": "vllm",
        "sampling": SAMPLING,
        "request_key": hashlib.sha256(raw.encode()).hexdigest(),
        "sample_index": sample_index,
        "raw_output": raw,
        "structured_outputs": True,
        "example_seed_ids": [],
    }
    if old_lineage:
        # As an earlier generator wrote it: an integer template_version, no seed_task and the later keys.
        lineage = {k: v for k, v in lineage.items() if k not in ("seed_task", "structured_outputs", "example_seed_ids")}
        lineage["template_version"] = 1
    enrichment = _enrichment({**item, "format": fmt})
    variants = ["label", "answer", "reasoning"] if fmt == "multiple_choice" else ["answer", "reasoning"]
    out = []
    for variant in variants:
        enriched = enrichment if variant == "reasoning" else None
        out.append(
            {
                "schema_version": "taskseed.generated/1",
                "id": content_id(item_id, variant),
                "seed_id": seed["id"],
                "kind": kind,
                "format": fmt,
                **item,
                "license": seed["license"],
                "lineage": lineage,
                "enrichment": enriched,
                "variant": variant,
                "text": render_text({**item, "format": fmt}, variant, enriched),
            }
        )
    return out


def _build_run(root: Path, fixtures_hf: Path) -> dict[str, Any]:
    """A finished run folder: run_summary.json, catalog, seeds, a published generate set, the real filter."""
    from nemo_taskseed.filter.step import run_filter
    from nemo_taskseed.generate.fixture_seeds import fixture_seeds
    from nemo_taskseed.pipeline.publish import file_entry
    from nemo_taskseed.utils.jsonl import write_jsonl

    seeds = fixture_seeds({task: 2 for task in TASKS}, fixtures_dir=fixtures_hf)
    for task in TASKS:
        write_jsonl(root / "seeds" / f"seeds.{task}.jsonl", [s for s in seeds if s["task"] == task])
    catalog = [
        {
            "task": task,
            "family": family,
            "dataset_path": path,
            "dataset_name": config,
            "language": "en",
            "license": next(s["license"] for s in seeds if s["task"] == task),
            "aliases": [],
        }
        for task, (family, path, config, *_) in TASKS.items()
    ]
    write_jsonl(root / "catalog" / "catalog.jsonl", catalog)

    gen_dir, files = root / "generate", {}
    for task, (_, path, config, _, _, fields_of) in TASKS.items():
        rows = fixture_rows(fixtures_hf, path, config, "train")
        task_seeds = [s for s in seeds if s["task"] == task]
        records = []
        for i in range(3):  # three new items per task, from training rows the seeds are not
            seed = task_seeds[i % len(task_seeds)]
            records += _records(seed, fields_of(rows[120 + i]), i % 2, old_lineage=task == "mbpp" and i == 0)
        if task == "arc_easy":
            # Two items the filter drops: a copy of the seed's own row, and an ARC-Easy test item.
            records += _records(task_seeds[0], fields_of(rows[0]), 0, old_lineage=False)[:1]
            test_row = fixture_rows(fixtures_hf, path, config, "test")[0]
            records += _records(task_seeds[1], fields_of(test_row), 0, old_lineage=False)[:1]
        part = gen_dir / "generated" / f"part-{task}.00000.jsonl"
        write_jsonl(part, records)
        files[f"generated/{part.name}"] = file_entry(part)
    (gen_dir / "summary.json").write_text(json.dumps({"files": files, "dropped": {"invalid_json": 1}}))

    cfg = load_config(
        None,
        [
            "filter.executor=inline",
            "filter.verify.enabled=false",
            "filter.decontam.source=mirror",
            f"filter.decontam.mirror={fixtures_hf}",
            # The fixture tasks' own benchmarks: indexing all of benchmarks/smoke.yaml's doubles the set-up.
            "filter.decontam.benchmarks=[{name: arc, task_dirs: [arc]}, {name: commonsense_qa, task_dirs: "
            "[commonsense_qa]}, {name: gsm8k, task_dirs: [gsm8k]}, {name: mbpp, task_dirs: [mbpp]}]",
            *NO_EMBEDDING_STAGES,
        ],
    )
    result = run_filter(cfg, gen_dir, root / "filter", root / "seeds", progress=False)
    summary = {"config": to_container(cfg), "steps": {"filter": {"kept": result["kept"], "seconds": 1.0}}}
    (root / "run_summary.json").write_text(json.dumps(summary))
    return summary


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, fixtures_hf) -> Path:
    root = tmp_path_factory.mktemp("run")
    _build_run(root, fixtures_hf)
    return root


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _copy_run(run: Path, dest: Path, **licenses: str) -> Path:
    """A copy of the run whose recorded catalog.licenses has `licenses` (dataset path -> license) changed."""
    shutil.copytree(run, dest)
    summary = json.loads((dest / "run_summary.json").read_text())
    table = summary["config"]["catalog"]["licenses"]
    for path, license_id in licenses.items():
        table[path.replace("__", "/")] = {"license": license_id, "source": "changed by the test"}
    (dest / "run_summary.json").write_text(json.dumps(summary))
    return dest


def _load(folder: Path, cache: Path, config: str | None = None) -> list[dict[str, Any]]:
    import datasets

    ds = datasets.load_dataset(str(folder), config, cache_dir=str(cache))
    assert list(ds) == ["train"]
    return list(ds["train"])


def _card_header(folder: Path) -> dict[str, Any]:
    import yaml

    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text[4:].split("\n---\n", 1)[0])


def test_export_loads_back_record_for_record(finished_run, tmp_path):
    curated = read_part_records(finished_run / "filter", "curated")
    assert {r["format"] for r in curated} == set(FORMATS) and len({r["family"] for r in curated}) == 4
    assert any(isinstance(r["lineage"]["template_version"], int) for r in curated)  # the older lineage survived
    out = tmp_path / "dataset"
    result = export_run(finished_run, out, load_config())
    assert result.stats.rows == len(curated)

    rows = _load(out, tmp_path / "cache")
    # The default config: every record, multiple choice first, each format in the curated order.
    expected = [r for fmt in FORMATS for r in curated if r["format"] == fmt]
    assert [row_to_record(r) for r in rows] == expected
    for fmt in FORMATS:
        assert [row_to_record(r) for r in _load(out, tmp_path / "cache", fmt)] == [
            r for r in curated if r["format"] == fmt
        ]
    # Columns to filter on, from the seed and the catalog.
    by_id = {r["id"]: r for r in rows}
    for record in curated:
        row = by_id[record["id"]]
        family, path, config, *_ = TASKS[record["task"]]
        assert (row["family"], row["source"], row["source_config"], row["language"]) == (family, path, config, "en")
        assert row["variant"] == record["variant"] and row["kind"] == record["kind"]
    # Only the older generator's records need `extra`, and only for what its lineage lacked.
    with_extra = [r for r in rows if r["extra"]]
    assert with_extra and all(r["lineage"]["template_version"] is None for r in with_extra)
    assert json.loads(with_extra[0]["extra"])["set"] == [[["lineage", "template_version"], 1]]

    header = _card_header(out)
    assert header["license"] == "cc-by-sa-4.0" and header["language"] == ["en"]
    assert header["size_categories"] == ["n<1K"]
    assert {c["config_name"] for c in header["configs"]} == {"default", *FORMATS}
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["records"] == len(curated) and manifest["configs"]["default"]["records"] == len(curated)
    for name, entry in manifest["files"].items():
        assert (out / name).stat().st_size == entry["bytes"]


def test_mixed_licenses_make_the_output_share_alike(finished_run, tmp_path):
    out = tmp_path / "dataset"
    result = export_run(finished_run, out, load_config())
    decision = result.decision
    assert decision.hub_license == "cc-by-sa-4.0" and decision.cleared and not decision.problems
    assert {s: t.license for s, t in decision.sources.items()} == {
        "allenai/ai2_arc": "cc-by-sa-4.0",
        "tau/commonsense_qa": "mit",
        "openai/gsm8k": "mit",
        "google-research-datasets/mbpp": "cc-by-4.0",
    }
    card = (out / "README.md").read_text()
    assert "**License: cc-by-sa-4.0.** Share-alike sources (allenai/ai2_arc)" in card
    # The terms are written out per source, with where each claim comes from.
    for source, license_id in (("tau/commonsense_qa", "mit"), ("google-research-datasets/mbpp", "cc-by-4.0")):
        line = next(x for x in card.splitlines() if x.startswith(f"| {source} | {license_id} | yes |"))
        assert "HF dataset card" in line
    assert (out / "LICENSE.md").read_text().startswith("# License of")
    drops = (out / "filter_drops.png").read_bytes()
    assert drops[:4] == b"\x89PNG" and "](filter_drops.png)" in card
    assert "## Contamination" in card and "## Blend plan" in card and "## Seeds" in card


def test_unknown_license_is_not_compatible_and_can_be_left_out(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path / "run", tau__commonsense_qa="unknown")
    out = tmp_path / "dataset"
    result = export_run(run, out, load_config())
    assert result.decision.hub_license == "other" and not result.decision.cleared
    header = _card_header(out)
    assert header["license"] == "other" and header["license_link"] == "LICENSE.md"
    card = (out / "README.md").read_text()
    assert "**Not cleared for release.**" in card and "tau/commonsense_qa" in card
    csqa = result.stats.per_source["tau/commonsense_qa"]
    assert csqa > 0

    kept = export_run(run, out, load_config(), license_compatible_only=True)  # replaces the earlier export
    assert kept.stats.rows == result.stats.rows - csqa and kept.left_out.total == csqa
    assert kept.decision.hub_license == "cc-by-sa-4.0" and kept.decision.cleared
    rows = _load(out, tmp_path / "cache")
    assert len(rows) == kept.stats.rows and "tau/commonsense_qa" not in {r["source"] for r in rows}
    card = (out / "README.md").read_text()
    assert "### Left out (`--license-compatible-only`)" in card
    assert f"| tau/commonsense_qa | unknown | {csqa} | catalog.licenses records its license as unknown" in card


def test_two_share_alike_licenses_cannot_be_combined(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path / "run", openai__gsm8k="cc-by-sa-3.0")
    result = export_run(run, tmp_path / "dataset", load_config())
    assert result.decision.hub_license == "other" and not result.decision.cleared
    (problem,) = result.decision.problems
    gsm = result.stats.per_source["openai/gsm8k"]
    assert "2 different share-alike licenses cannot be combined" in problem
    assert f"cc-by-sa-3.0: openai/gsm8k ({gsm} records)" in problem and "cc-by-sa-4.0: allenai/ai2_arc" in problem


def test_license_rule_single_and_mixed_permissive():
    rules = LicenseRules(
        {"licenses": {"a/x": "mit", "b/y": "cc-by-4.0"}, "compatible_licenses": ["mit", "cc-by-4.0"]},
        ["cc-by-sa-*"],
    )
    assert decide(rules, {"a/x": 3}).hub_license == "mit"
    mixed = decide(rules, {"a/x": 3, "b/y": 1})
    assert mixed.hub_license == ["cc-by-4.0", "mit"] and mixed.cleared
    untraced = decide(rules, {"a/x": 3, "unknown": 1})
    assert untraced.hub_license == "other" and "unknown (1 records)" in untraced.problems[0]


def test_rows_keep_any_record_exactly(tmp_path):
    """What the fixed columns cannot hold goes to `extra`; JSON columns keep the filter's annotations."""
    import pyarrow.parquet as pq

    base = {
        "schema_version": "taskseed.generated/1",
        "id": "0123456789abcdef",
        "seed_id": "fedcba9876543210",
        "family": "arc",
        "task": "arc_easy",
        "kind": "knowledge",
        "format": "multiple_choice",
        "question": "Which gas do plants take in?",
        "context": None,
        "options": ["oxygen", "carbon dioxide"],
        "answer_index": 1,
        "answer_text": "carbon dioxide",
        "reference": None,
        "tests": None,
        "license": "cc-by-sa-4.0",
        "lineage": {"seed_id": "fedcba9876543210", "sampling": {"n": 1, "temperature": 1, "seed": None}},
        "enrichment": {"reasoning": "r", "alternatives": [{"option": None, "why_wrong": "w"}], "knowledge": "k"},
        "variant": "label",
        "text": "Question: ...",
    }
    odd = [
        dict(base, verification={"method": "vote", "k": 5, "votes": ["B", None], "agreement": 0.8, "passed": True}),
        dict(base, semantic_match=None, new_key={"x": [1, 2]}, answer_index=True),
        dict(base, lineage="not a dict", enrichment=None, options=["a", 3]),
        {k: v for k, v in base.items() if k not in ("text", "tests")},
        dict(base, lineage={**base["lineage"], "seed_task": None}, question="lone \udc80 surrogate"),
        dict(base, enrichment={"reasoning": "r", "alternatives": [{"option": "A"}], "knowledge": "k", "lineage": {}}),
    ]
    writer = ShardWriter(tmp_path, "multiple_choice", rows_per_shard=4, row_group_rows=2)
    for record in odd:
        writer.add(record_to_row(record, {"language": "en", "source": "allenai/ai2_arc", "source_config": None}))
    shards = writer.close()
    assert [s.path.name for s in shards] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    rows = [r for s in shards for r in pq.read_table(tmp_path / s.path).to_pylist()]
    assert [row_to_record(r) for r in rows] == odd
    assert json.loads(rows[0]["verification"])["votes"] == ["B", None] and rows[0]["semantic_match"] is None


def test_not_a_finished_run_is_a_user_error(finished_run, tmp_path, capsys):
    from nemo_taskseed.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=f"{empty} is not a finished run"):
        export_run(empty, tmp_path / "out", load_config())
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "filter" / "summary.json").unlink()  # as a killed filter step leaves it
    assert main(["export", str(run), "--out", str(tmp_path / "out")]) == 2
    assert f"{run / 'filter'} has no summary.json" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="is not empty and holds no earlier export"):
        export_run(finished_run, tmp_path / "busy", load_config())
    assert not (tmp_path / "out").exists()


@pytest.mark.subprocess
def test_cli_exports_then_push_fails_clearly_offline(finished_run, tmp_path):
    """The real command line: the export is written, and an upload without a token or network is a
    clear error (exit 2) that says the export is complete."""
    out = tmp_path / "dataset"
    # A fresh HF_HOME: no token saved by `hf auth login` on this machine is found.
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nemo_taskseed",
            "export",
            str(finished_run),
            "--out",
            str(out),
            "--push-to-hub",
            "me/x",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--push-to-hub me/x: no Hugging Face token" in proc.stderr and f"complete in {out}" in proc.stderr
    assert "exported" in proc.stdout and (out / "README.md").is_file() and not (out / "taskseed.log").exists()
