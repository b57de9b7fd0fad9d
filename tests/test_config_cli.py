"""Config composition, overrides and CLI error handling."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nemo_taskseed.config import ConfigError, load_config
from nemo_taskseed.schema import validate_seed


def test_base_sections_compose_and_overrides_apply(tmp_path):
    user = tmp_path / "job.yaml"
    user.write_text("seeds:\n  max_per_subtask: 7\n")
    cfg = load_config(user, ["seeds.sample_seed=99", "catalog.denylist=[gpqa*]"])
    assert cfg.seeds.max_per_subtask == 7 and cfg.seeds.sample_seed == 99
    assert list(cfg.catalog.denylist) == ["gpqa*"]
    assert cfg.catalog.split_overrides.mbpp == "train"  # untouched defaults survive


def test_bad_config_and_overrides_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["seeds.max_per_subtask"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("seeds: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(broken)


def test_cli_reports_user_errors_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "nemo_taskseed", "run", str(tmp_path / "missing.yaml")], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "config file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_schema_names_the_failing_field():
    record = {
        "schema_version": "taskseed.seed/1",
        "id": "0123456789abcdef",
        "family": "arc",
        "task": "arc_easy",
        "split": "train",
        "kind": "knowledge",
        "format": "multiple_choice",
        "output_type": "multiple_choice",
        "question": "Which gas do plants take in?",
        "context": None,
        "options": ["oxygen", "carbon dioxide"],
        "answer_index": 1,
        "answer_text": "carbon dioxide",
        "references": ["carbon dioxide"],
        "prompt": "",
        "license": "mit",
        "source": {"dataset_path": "x/y", "dataset_name": None, "split": "train", "row": 0},
    }
    assert validate_seed(record) == []
    assert validate_seed({**record, "answer_index": 5}) == ["answer_index: 5 out of range for 2 options"]
    assert validate_seed({**record, "answer_text": "oxygen"}) == ["answer_text: does not equal options[answer_index]"]
    errors = validate_seed({**record, "question": "  ", "kind": "trivia"})
    assert [e.split(":")[0] for e in errors] == ["kind", "question"]
    assert validate_seed({**record, "format": "generative"})[0].startswith("answer_index")


def test_unknown_keys_are_errors_with_a_suggestion(tmp_path):
    """A misspelt or renamed key would otherwise be merged in and never read."""
    with pytest.raises(
        ConfigError,
        match=r"override: unknown key\(s\) generate.backend.vllm.max_in_fligh "
        r"\(did you mean max_in_flight\?\)",
    ):
        load_config(None, ["generate.backend.vllm.max_in_fligh=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("filter:\n  dedup:\n    fuzzy:\n      treshold: 0.8\n")
    with pytest.raises(
        ConfigError, match=rf"{bad}: unknown key\(s\) filter.dedup.fuzzy.treshold \(did you mean threshold\?\)"
    ):
        load_config(bad)
    # Maps whose keys are data stay open; so do sections whose default is null; preset keys are known.
    cfg = load_config(
        None,
        [
            "filter.verify.families.my_family=math",
            "catalog.licenses.org/data=mit",
            "filter.verify.backend.kind=vllm",
            "train.lr=1e-4",
            "eval.benchmarks.mine.task=x",
        ],
    )
    assert cfg.filter.verify.families.my_family == "math" and cfg.train.lr == 1e-4
