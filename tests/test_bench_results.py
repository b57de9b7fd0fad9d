"""bench/_results.py: a bench's printed table replaces its marked block of docs/benchmarks.md."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _results():
    spec = importlib.util.spec_from_file_location("bench_results", REPO / "bench" / "_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PAGE = """# Benchmarks

## Tokenize

Hand-written notes stay.

<!-- bench:tokenize:start -->
old table
<!-- bench:tokenize:end -->

How to read it (stays too).

<!-- bench:blend:start -->
blend table
<!-- bench:blend:end -->
"""


def test_replaces_only_its_block(tmp_path):
    res = _results()
    page = tmp_path / "benchmarks.md"
    page.write_text(PAGE)
    res.update_docs(
        "tokenize",
        "method  wall s\nbaseline  5.20\n",
        command="python bench/bench_tokenize.py",
        page=page,
        date="2026-01-02",
        machine="Linux x86_64, 2 cores",
    )
    text = page.read_text()
    assert "old table" not in text and "baseline  5.20" in text
    assert "Last run 2026-01-02 on Linux x86_64, 2 cores: `python bench/bench_tokenize.py`" in text
    assert "Hand-written notes stay." in text and "How to read it (stays too)." in text
    assert "blend table" in text  # the other bench's block is untouched
    # Running again replaces the block, it does not add a second one.
    res.update_docs("tokenize", "second run\n", command="x", page=page, date="2026-01-03", machine="m")
    text = page.read_text()
    assert text.count("<!-- bench:tokenize:start -->") == 1 and "second run" in text and "baseline  5.20" not in text


def test_missing_block_is_appended_and_duplicates_refused(tmp_path):
    res = _results()
    page = tmp_path / "benchmarks.md"
    page.write_text(PAGE)
    res.update_docs("dedup", "x1", command="c", page=page, date="d", machine="m")
    text = page.read_text()
    assert text.endswith("<!-- bench:dedup:end -->\n") and "## dedup" in text
    page.write_text(PAGE + PAGE)
    with pytest.raises(ValueError, match="2 blocks"):
        res.update_docs("blend", "x", command="c", page=page)
    with pytest.raises(ValueError):
        res.replace_block(PAGE, "bad name", "x")


def test_publish_output_tees_and_env_switch(tmp_path, monkeypatch, capsys):
    res = _results()
    page = tmp_path / "benchmarks.md"
    page.write_text(PAGE)
    monkeypatch.setenv("TASKSEED_BENCH_DOCS", str(page))
    with res.publish_output("blend"):
        print("budget  seconds")
        print("   1B     0.02")
    out = capsys.readouterr().out
    assert "   1B     0.02" in out and "block bench:blend" in out
    text = page.read_text()
    assert re.search(r"Last run \d{4}-\d\d-\d\d on .*cores.*Python", text)
    assert "budget  seconds\n   1B     0.02\n```" in text
    # An exception inside leaves the page as it was; TASKSEED_BENCH_DOCS=0 never writes.
    before = page.read_text()
    with pytest.raises(RuntimeError):
        with res.publish_output("blend"):
            print("half a table")
            raise RuntimeError("bench failed")
    assert page.read_text() == before
    monkeypatch.setenv("TASKSEED_BENCH_DOCS", "0")
    with res.publish_output("blend"):
        print("quick run")
    assert page.read_text() == before


def test_every_bench_publishes_a_block_that_the_page_has():
    """Each bench script names a block, and one docs page holds that block (once): docs/benchmarks.md,
    or the page the bench names (bench_contamination.py writes into docs/decontamination.md)."""
    pages = [p.read_text() for p in sorted((REPO / "docs").glob("*.md"))]
    for script in sorted((REPO / "bench").glob("bench_*.py")):
        names = re.findall(r'(?:publish_output|update_docs)\("([\w.-]+)"', script.read_text())
        assert names, f"{script.name} does not write its results to a docs page"
        for name in names:
            assert sum(p.count(f"<!-- bench:{name}:start -->") for p in pages) == 1, (script.name, name)
            assert sum(p.count(f"<!-- bench:{name}:end -->") for p in pages) == 1, (script.name, name)
