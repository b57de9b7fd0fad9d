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


@pytest.mark.subprocess
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


def _settings_classes():
    from nemo_taskseed.blend.settings import PlanSettings, VerifySettings
    from nemo_taskseed.filter.quality.explanation import ExplanationSettings
    from nemo_taskseed.filter.semantic.check import SemanticSettings
    from nemo_taskseed.filter.semantic.dedup import SemanticDedupSettings
    from nemo_taskseed.filter.settings import step_executor as filter_executor
    from nemo_taskseed.filter.verify import CodeSettings, VoteSettings
    from nemo_taskseed.generate.settings import EnrichmentSettings, GenerationSettings
    from nemo_taskseed.llm.requests import sampling_of
    from nemo_taskseed.tokenize import TokenizeOptions

    return [
        (GenerationSettings.from_config, "generate", "structured_outputs"),
        (EnrichmentSettings.from_config, "enrich", "variants"),
        (VoteSettings.from_config, "filter.verify.vote", "threshold"),
        (CodeSettings.from_config, "filter.verify.code", "memory_mb"),
        (SemanticSettings.from_config, "filter.decontam.semantic", "threshold"),
        (SemanticDedupSettings.from_config, "filter.dedup.semantic", "second_margin"),
        (ExplanationSettings.from_config, "filter.quality.explanation", "min_new_words"),
        (lambda section: TokenizeOptions.from_config(section, "tokenizer"), "tokenize", "max_document_chars"),
        (PlanSettings.from_config, "blend", "synthetic_share"),
        (VerifySettings.from_config, "blend.verify", "build"),
        (lambda section: sampling_of(section, "enrich.sampling"), "enrich.sampling", "max_tokens"),
        (lambda section: filter_executor({"filter": section, "run": {"executor": "inline"}}), "filter", "executor"),
        (lambda section: filter_executor({"filter": {"executor": "inherit"}, "run": section}), "run", "executor"),
    ]


@pytest.mark.parametrize("build, section, key", _settings_classes(), ids=lambda v: v if isinstance(v, str) else "")
def test_settings_defaults_live_in_the_config_only(build, section, key):
    """Each stage's settings come from its config section: the base config builds them, and a
    section without a key is an error naming the key, not a default written again in code (those
    had drifted: tokenize.max_document_chars 0 vs 200000, blend.synthetic_share 0.1 vs 0.02)."""
    from nemo_taskseed.config import to_container

    data = to_container(load_config())
    for part in section.split("."):
        data = data[part]
    build(data)  # the base section is complete
    with pytest.raises(ConfigError, match=rf"config is missing .*{section}\.{key}\b"):
        build({k: v for k, v in data.items() if k != key})
