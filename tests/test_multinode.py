"""Multi-node for real: a two-node Ray cluster on this machine (`ray.cluster_utils.Cluster`, one CPU
per node) filters, then tokenizes, a few thousand records in several shards. Shards run on both nodes
(each shard's marker names its node) and every output equals the in-process executor's, byte for
byte. A filter that loses its worker node midway finishes on the head node with the output of an
uninterrupted run. Generation on the cluster (against a real vLLM server) is in
test_generate_resume.py, next to the server it shares."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_filter_fixtures import (
    NO_EMBEDDING_STAGES,
    filter_command,
    fixture_rows,
    gsm8k_fields,
    make_generated,
    make_seed,
    mc_fields,
    write_jsonl,
)

from nemo_taskseed.config import load_config
from nemo_taskseed.filter.step import run_filter
from nemo_taskseed.pipeline import shards
from nemo_taskseed.tokenize.step import tokenize_inputs

pytestmark = [pytest.mark.ray, pytest.mark.multinode]

REPO = Path(__file__).resolve().parent.parent

VARIANTS = ("label", "answer", "reasoning", "context")


@pytest.fixture(scope="module")
def generated(tmp_path_factory, fixtures_hf):
    """~3,200 records (800 items x 4 variants) from real training rows, in 8 shards, plus planted
    copies across shards: an exact copy and a near copy each live in another shard than their twin."""
    root = tmp_path_factory.mktemp("multinode")
    sources = [
        ("arc", "arc_easy", fixture_rows(fixtures_hf, "allenai/ai2_arc", "ARC-Easy", "train"), mc_fields),
        (
            "commonsense_qa",
            "commonsense_qa",
            fixture_rows(fixtures_hf, "tau/commonsense_qa", "default", "train"),
            mc_fields,
        ),
        ("openbookqa", "openbookqa", fixture_rows(fixtures_hf, "allenai/openbookqa", "main", "train"), mc_fields),
        ("gsm8k", "gsm8k", fixture_rows(fixtures_hf, "openai/gsm8k", "main", "train"), gsm8k_fields),
    ]
    seeds, parts = [], {}
    for family, task, rows, fields in sources:
        task_seeds = [make_seed(family, task, fields(rows[i]), i) for i in range(10)]
        seeds += task_seeds
        items = [
            _enriched(make_generated(task_seeds[i % 10], fields(row), variant=v))
            for i, row in enumerate(rows)
            for v in VARIANTS
        ]
        half = len(items) // 2
        parts[f"{task}.00000"], parts[f"{task}.00001"] = items[:half], items[half:]
    # Cross-shard copies: arc row 50 again in gsm8k's last shard (upper-cased: exact), openbookqa
    # row 70 with one option word changed in commonsense_qa's first shard (near).
    arc = fixture_rows(fixtures_hf, "allenai/ai2_arc", "ARC-Easy", "train")
    copy = dict(mc_fields(arc[50]), question=mc_fields(arc[50])["question"].upper())
    parts["gsm8k.00001"].append(make_generated(seeds[0], copy, sample_index=9))
    obqa = mc_fields(fixture_rows(fixtures_hf, "allenai/openbookqa", "main", "train")[70])
    near = dict(obqa, options=[*obqa["options"][:-1], obqa["options"][-1] + " indeed"])
    parts["commonsense_qa.00000"].append(make_generated(seeds[10], near, sample_index=9))
    for shard, records in parts.items():
        write_jsonl(shards.part_path(root / "gen", "generated", shard), records)
    write_jsonl(root / "seeds" / "seeds.jsonl", seeds)
    return root, sum(len(r) for r in parts.values())


def _enriched(record: dict) -> dict:
    """Give a record an enrichment that passes the filter's rule checks (schema, text quality,
    explanation consistency): a reasoning that concludes the label (or the math answer), one
    distinct reason per wrong option, background that adds something."""
    letters = "ABCDEFGHIJ"
    if record["options"]:
        label = record["answer_index"]
        reasoning = (
            f"Comparing every choice with the facts in the question, the best supported one is "
            f"{record['answer_text']}, so the answer is {letters[label]}."
        )
        alternatives = [
            {
                "option": letters[i],
                "why_wrong": f"Choice {letters[i]} does not fit the situation described in this particular question.",
            }
            for i in range(len(record["options"]))
            if i != label
        ]
    else:
        reasoning = f"Working through the quantities step by step gives the final result of {record['answer_text']}."
        alternatives = []
    record["enrichment"] = {
        "reasoning": reasoning,
        "alternatives": alternatives,
        "knowledge": "Background facts about science, everyday life and arithmetic connect "
        "such questions to their correct answers.",
    }
    return record


def _cfg(fixtures_hf: Path, executor: str):
    return load_config(
        "benchmarks/smoke",
        [
            f"filter.executor={executor}",
            "filter.verify.enabled=false",
            "filter.decontam.source=mirror",
            f"filter.decontam.mirror={fixtures_hf}",
        ],
    )


def _files(folder: Path, kinds: tuple[str, ...]) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for kind in kinds for p in shards.part_files(folder, kind)}


def _nodes(step_dir: Path) -> set[str]:
    return {json.loads(p.read_text())["worker"]["node_id"] for p in (step_dir / "shards").glob("*.json")}


def test_filter_on_two_nodes_equals_in_process(generated, fixtures_hf, ray_cluster, tmp_path, monkeypatch):
    root, n_records = generated
    address, node_ids = ray_cluster
    inline = run_filter(_cfg(fixtures_hf, "inline"), root / "gen", tmp_path / "inline", root / "seeds")
    assert inline["in"] == n_records > 3000 and inline["shards"]["total"] == 8
    # The planted cross-shard copies are caught by the global dedup.
    reasons = inline["rejected_by_reason"]
    assert reasons.get("exact_dedup:exact_duplicate", 0) >= 1 and reasons.get("fuzzy_dedup:near_duplicate", 0) >= 1

    monkeypatch.setenv("RAY_ADDRESS", address)
    on_ray = run_filter(_cfg(fixtures_hf, "ray_data"), root / "gen", tmp_path / "ray", root / "seeds")
    assert _files(tmp_path / "ray", ("curated", "rejected")) == _files(tmp_path / "inline", ("curated", "rejected"))
    for report in ("quality_report.json", "contamination_report.json"):
        assert (tmp_path / "ray" / report).read_bytes() == (tmp_path / "inline" / report).read_bytes()
    assert {k: v for k, v in on_ray.items() if k not in ("seconds", "shards", "summary", "outputs")} == {
        k: v for k, v in inline.items() if k not in ("seconds", "shards", "summary", "outputs")
    }
    # Both nodes screened shards (phase 1: work/shards) and wrote shards (phase 3: shards).
    assert _nodes(tmp_path / "ray" / "work") == set(node_ids)
    assert _nodes(tmp_path / "ray") == set(node_ids)

    # Tokenize the curated parts: one shard per part, merged per family/variant.
    tokenize = load_config(overrides=["tokenize.progress=false"]).tokenize
    monkeypatch.delenv("RAY_ADDRESS")
    inline_manifest, _ = tokenize_inputs(
        tokenize, tmp_path / "tok_inline", in_dir=tmp_path / "inline", run_executor="inline"
    )
    monkeypatch.setenv("RAY_ADDRESS", address)
    ray_manifest, run = tokenize_inputs(
        tokenize, tmp_path / "tok_ray", in_dir=tmp_path / "ray", run_executor="ray_data"
    )
    assert run["executor"] == "ray_data" and inline_manifest["totals"]["documents"] == on_ray["kept"]
    prefixes = sorted(p.name for p in (tmp_path / "tok_inline").glob("*.bin"))
    assert len(prefixes) == 16  # 4 families x 4 variants
    for name in [*prefixes, *(n.replace(".bin", ".idx") for n in prefixes)]:
        assert (tmp_path / "tok_ray" / name).read_bytes() == (tmp_path / "tok_inline" / name).read_bytes(), name
    same = lambda m: [{k: v for k, v in p.items()} for p in m["prefixes"]]  # noqa: E731
    assert same(ray_manifest) == same(inline_manifest)
    assert {json.loads(p.read_text())["node_id"] for p in (tmp_path / "tok_ray" / "shards").glob("*.json")} == set(
        node_ids
    )


def _compare_runs():
    """scripts/compare_runs.py (a script, not a package module): its `compare` and default ignores."""
    spec = importlib.util.spec_from_file_location("compare_runs", REPO / "scripts" / "compare_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compare, module.IGNORE


def _filter_on_cluster(root: Path, out: Path, fixtures_hf: Path) -> list[str]:
    """`taskseed filter` with the settings of `_cfg` less the embedding checks (a model load per
    worker, not what is tested here), on the cluster that RAY_ADDRESS names."""
    cmd = filter_command(root / "gen", out, fixtures_hf, "filter.verify.enabled=false", *NO_EMBEDDING_STAGES)
    cmd[cmd.index("--executor") + 1] = "ray_data"
    return [*cmd, "--seeds", str(root / "seeds")]


def _markers(step_dir: Path) -> dict[str, str]:
    """Shard -> the node that wrote its done marker."""
    return {p.stem: json.loads(p.read_text())["worker"]["node_id"] for p in (step_dir / "shards").glob("*.json")}


def _worker_left_mid_phase(run: subprocess.Popen, phases: dict[Path, int], node_id: str):
    """Wait until `node_id` has finished a shard of a phase that still has shards to do (phase
    folder -> its number of shards: work/ screens, the step folder writes); returns that folder and
    its markers then, or None if the run ended (or 10 minutes passed) first."""
    deadline = time.monotonic() + 600
    while run.poll() is None and time.monotonic() < deadline:
        for folder, total in phases.items():
            done = _markers(folder)
            if node_id in done.values() and len(done) < total:
                return folder, done
        time.sleep(0.05)
    return None


@pytest.mark.subprocess
def test_a_worker_node_removed_mid_filter_leaves_what_an_uninterrupted_run_writes(
    generated, fixtures_hf, ray_cluster_handle, tmp_path
):
    """`taskseed filter` on the two-node cluster loses its worker node (`cluster.remove_node`) once
    that node has finished a shard and the phase still has shards to do; the run finishes on the
    head node, and its folder equals an uninterrupted run's on both nodes: curated and rejected
    parts, reports, summary and every marker (scripts/compare_runs.py: markers compared without
    worker identity and timings)."""
    root, _ = generated
    cluster = ray_cluster_handle
    (worker,) = cluster.worker_nodes
    head = cluster.head_node.node_id
    env = {**os.environ, "RAY_ADDRESS": cluster.address}

    reference = tmp_path / "uninterrupted"
    proc = subprocess.run(
        _filter_on_cluster(root, reference, fixtures_hf), env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    screened, written = _markers(reference / "work"), _markers(reference)
    assert len(screened) == 9 and len(written) == 8  # 8 shards, and the seeds screened as a reference shard
    assert worker.node_id in screened.values()

    out, log = tmp_path / "interrupted", tmp_path / "interrupted.log"
    with open(log, "w") as stderr:
        run = subprocess.Popen(
            _filter_on_cluster(root, out, fixtures_hf),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        removed_at = _worker_left_mid_phase(run, {out / "work": len(screened), out: len(written)}, worker.node_id)
        assert removed_at is not None and run.poll() is None, "no moment with the worker busy and shards left"
        cluster.remove_node(worker)
        run.wait(timeout=900)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        cluster.add_node(num_cpus=1)  # the module's cluster has two nodes again
        cluster.wait_for_nodes()
    assert run.returncode == 0, log.read_text()[-3000:]
    # The shards of that phase finished after the removal, and those of any later phase, ran on the head.
    folder, before = removed_at
    later = {s: node for s, node in _markers(folder).items() if s not in before}
    assert later and set(later.values()) == {head}
    if folder == out / "work":
        assert set(_markers(out).values()) == {head}
    compare, ignore = _compare_runs()
    assert compare(reference, out, ignore) == []
