"""A step's outputs are a set published by its summary.json, written last; readers refuse a set
that a killed run left mixed, or that changed after it was published (pipeline/publish.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from test_filter_fixtures import (
    NO_EMBEDDING_STAGES,
    filter_command,
    fixture_rows,
    make_generated,
    make_seed,
    mc_fields,
    write_jsonl,
)

from nemo_taskseed.config import load_config, to_container
from nemo_taskseed.errors import UserError
from nemo_taskseed.tokenize.step import input_files


def _filter_cmd(gen, out, fixtures_hf):
    return filter_command(gen, out, fixtures_hf, "filter.verify.enabled=false", *NO_EMBEDDING_STAGES)


@pytest.mark.subprocess
def test_a_killed_filter_run_leaves_a_set_that_readers_refuse(tmp_path, fixtures_hf):
    rows = fixture_rows(fixtures_hf, "allenai/ai2_arc", "ARC-Easy", "train")
    seed = make_seed("arc", "arc_easy", mc_fields(rows[0]), 0)
    gen, out = tmp_path / "gen", tmp_path / "filter"
    write_jsonl(gen / "generated-00000.jsonl", [make_generated(seed, mc_fields(rows[i])) for i in range(20, 60)])
    write_jsonl(gen / "generated-00001.jsonl", [make_generated(seed, mc_fields(rows[i])) for i in range(60, 100)])
    proc = subprocess.run(_filter_cmd(gen, out, fixtures_hf), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    section = to_container(load_config())["tokenize"]
    summary = json.loads((out / "summary.json").read_text())
    listed = {k for k in summary["files"] if k.startswith("curated/")}
    assert {f"curated/{p.name}" for p in input_files(section, out)} == listed and len(listed) == 2
    assert all(len(e["sha256"]) == 64 for e in summary["files"].values())
    assert {"quality_report.json", "quality_summary.txt", "contamination_report.json"} <= set(summary["files"])

    # A part that changed after the set was published is refused.
    part = out / sorted(listed)[0]
    original = part.read_bytes()
    part.write_bytes(original + b'{"id": "sneaked in"}\n')
    with pytest.raises(UserError, match="changed after its step finished"):
        input_files(section, out)
    part.write_bytes(original)

    # A second run on new inputs, killed -9 once it has started replacing the set.
    write_jsonl(gen / "generated-00002.jsonl", [make_generated(seed, mc_fields(rows[i])) for i in range(100, 140)])
    victim = subprocess.Popen(
        _filter_cmd(gen, out, fixtures_hf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while (out / "summary.json").exists():
        assert victim.poll() is None and time.monotonic() < deadline, "the run never started replacing the set"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    with pytest.raises(UserError, match="did not finish"):
        input_files(section, out)
    # The rerun publishes a complete set again (3 parts now).
    proc = subprocess.run(_filter_cmd(gen, out, fixtures_hf), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(input_files(section, out)) == 3


@pytest.mark.subprocess
def test_a_set_made_from_inputs_that_changed_since_is_stale(tmp_path, fixtures_hf):
    """filter records the digest of the generate set it read; a later change to that set (a
    generate rerun with more seeds) makes the filter folder stale for its readers."""
    rows = fixture_rows(fixtures_hf, "allenai/ai2_arc", "ARC-Easy", "train")
    seed = make_seed("arc", "arc_easy", mc_fields(rows[0]), 0)
    gen, out = tmp_path / "gen", tmp_path / "filter"
    write_jsonl(
        gen / "generated" / "part-arc_easy.00000.jsonl",
        [make_generated(seed, mc_fields(rows[i])) for i in range(20, 40)],
    )
    part = gen / "generated" / "part-arc_easy.00000.jsonl"
    from nemo_taskseed.pipeline.publish import file_entry

    def publish_gen():
        (gen / "summary.json").write_text(
            json.dumps({"files": {"generated/part-arc_easy.00000.jsonl": file_entry(part)}, "seconds": time.time()})
        )

    publish_gen()
    proc = subprocess.run(_filter_cmd(gen, out, fixtures_hf), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    section = to_container(load_config())["tokenize"]
    assert len(input_files(section, out)) == 1
    publish_gen()  # republished, same set (only its timing changed): still fresh
    assert len(input_files(section, out)) == 1
    write_jsonl(part, [make_generated(seed, mc_fields(rows[i])) for i in range(20, 41)])
    publish_gen()  # the generate set changed
    with pytest.raises(UserError, match="is stale"):
        input_files(section, out)


def test_oversized_records_and_documents_are_rejected_with_file_and_line(tmp_path):
    """One runaway record must not become a 3.9M-token document: filter rejects records over
    filter.validate.max_record_bytes at `read`, tokenize texts over tokenize.max_document_chars."""
    from nemo_taskseed.filter.records import frame_from_lines
    from nemo_taskseed.tokenize.records import Reject, read_documents

    path = tmp_path / "part.jsonl"
    small = {"id": "a", "text": "short", "family": "arc"}
    big = {"id": "b", "text": "x" * 5000, "family": "arc"}
    path.write_text(json.dumps(small) + "\n" + json.dumps(big) + "\n")
    df = frame_from_lines(path, max_record_bytes=1000)
    rejected = df[df["status"] == "rejected"]
    assert list(rejected["reason"]) == ["record_too_large"]
    detail = json.loads(rejected["detail"].iloc[0])
    assert detail["line"] == 2 and detail["file"] == str(path) and "> limit 1000" in detail["error"]
    items = list(read_documents(path, group_by=("family",), max_chars=1000))
    assert [type(i).__name__ for i in items] == ["Document", "Reject"]
    assert isinstance(items[1], Reject) and items[1].line == 2 and "max_document_chars=1000" in items[1].reason
