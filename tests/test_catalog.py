"""The seed catalog, built from the installed lm-eval 0.4.13 task YAMLs (no task code imported)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nemo_taskseed.catalog import build_catalog, load_catalog_rows
from nemo_taskseed.catalog.build import LicenseTable
from nemo_taskseed.catalog.guard import ScoredSplits, choose_seed_split
from nemo_taskseed.config import load_config
from nemo_taskseed.errors import UserError

REQUIRED_KEYS = {"family", "task", "dataset_path", "dataset_name", "split", "format", "kind", "license"}


@pytest.fixture(scope="module")
def catalog():
    return build_catalog(load_config().catalog)


def test_counts_meet_the_floor(catalog):
    counts = catalog.counts()
    declared = [r for r in catalog.eligible if r["split_role"] in ("training_split", "override")]
    # Families are capability families (configs/capabilities.yaml): ARC in arc/, arc_mt/, okapi/ and
    # tinyBenchmarks/ is one. Measured with stock lm-eval 0.4.13: 5,212 subtasks in 67 families
    # (86 lm-eval folders); declared training splits (plus overrides) only: 405 subtasks, 260
    # distinct sources, 50 families (61 folders).
    assert counts["eligible_families"] >= 60 and counts["eligible_subtasks"] >= 5000
    assert len({r["folder"] for r in catalog.eligible}) >= 85
    assert len({r["family"] for r in declared}) >= 45 and len({r["folder"] for r in declared}) >= 60
    assert len(declared) >= 400
    assert counts["by_kind"]["knowledge"] > 0 and counts["by_kind"]["reasoning"] > 0
    assert sum(counts["by_split_role"].values()) == counts["eligible_subtasks"]


def test_leaky_tasks_are_excluded_with_reason(catalog):
    excluded = {r["task"]: r for r in catalog.excluded}
    eligible = {r["task"] for r in catalog.eligible}
    for task in ("gpqa_main_zeroshot", "gpqa_diamond_zeroshot", "aime25", "gsm8k_platinum", "gsm_plus"):
        assert task not in eligible
        assert excluded[task]["reason_code"] == "leak", excluded[task]
        assert "is scored by" in excluded[task]["reason"]
    assert "'train' is scored by" in excluded["gpqa_main_zeroshot"]["reason"]
    assert "'test' is scored by" in excluded["aime25"]["reason"]


def test_fewshot_from_train_stays_eligible_and_roles_are_recorded(catalog):
    rows = {r["task"]: r for r in catalog.eligible}
    # arc and gsm8k draw few-shot examples from train: that does not make train scored.
    assert rows["arc_easy"]["split"] == "train" and rows["arc_easy"]["split_role"] == "training_split"
    assert rows["gsm8k"]["split"] == "train" and rows["gsm8k"]["format"] == "generative"
    # MMLU declares no training split; its unscored few-shot split seeds.
    assert rows["mmlu_anatomy"]["split"] == "dev" and rows["mmlu_anatomy"]["split_role"] == "fewshot_split"
    assert rows["mmlu_anatomy"]["kind"] == "knowledge" and rows["gsm8k"]["kind"] == "reasoning"
    # mbpp's train split is named by a config override and passes the guard.
    assert rows["mbpp"]["split"] == "train" and rows["mbpp"]["split_role"] == "override"
    assert rows["arc_easy"]["license"] == "cc-by-sa-4.0"
    assert all(REQUIRED_KEYS <= set(r) for r in catalog.eligible)


def test_guard_rejects_split_scored_by_a_sibling_task():
    scored = ScoredSplits()
    scored.add_task("sibling_eval", {"dataset_path": "org/data", "dataset_name": "cfg", "test_split": "train"})
    seed = choose_seed_split(
        "trainer", {"dataset_path": "org/data", "dataset_name": "cfg", "training_split": "train"}, scored, {}
    )
    assert seed.split is None and "sibling_eval:test_split" in seed.reason
    # A different config of the same dataset is different data.
    seed = choose_seed_split(
        "trainer", {"dataset_path": "org/data", "dataset_name": "other", "training_split": "train"}, scored, {}
    )
    assert seed.split == "train"


def test_license_switch_and_denylist():
    cfg = load_config(overrides=["catalog.license_compatible_only=true", "catalog.denylist=[hellaswag]"])
    result = build_catalog(cfg.catalog)
    assert {r["license"] for r in result.eligible} <= set(cfg.catalog.compatible_licenses)
    reasons = {r["task"]: r["reason_code"] for r in result.excluded}
    assert reasons["hellaswag"] == "denylist"
    assert reasons["openbookqa"] == "license"  # its card says "unknown"


def test_repeat_is_served_from_cache(catalog):
    again = build_catalog(load_config().catalog)
    assert again.cache_hit
    assert again.eligible == catalog.eligible


def test_unknown_task_suggests_near_matches():
    with pytest.raises(UserError, match="arc_easy"):
        load_catalog_rows(load_config().catalog, ["arc_eazy"])
    with pytest.raises(UserError, match="not eligible.*leak"):
        load_catalog_rows(load_config().catalog, ["gpqa_main_zeroshot"])


@pytest.mark.subprocess
def test_cli_writes_catalog_and_excluded(tmp_path):
    out, excluded = tmp_path / "catalog.jsonl", tmp_path / "excluded.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "nemo_taskseed", "catalog", "--out", str(out), "--excluded", str(excluded)],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    dropped = [json.loads(line) for line in excluded.read_text().splitlines()]
    assert len(rows) >= 480 and all(REQUIRED_KEYS <= set(r) for r in rows)
    assert all(r["reason"] for r in dropped)
    assert "training_split" in proc.stdout and "knowledge" in proc.stdout
    assert "training-split catalog vs the paper" in proc.stdout and "license_compatible_only" in proc.stdout


def test_every_subtask_gets_an_answer_check_by_rule(catalog):
    """The check a generated item gets is derived from its subtask's lm-eval config, with the
    reason recorded; nothing falls back silently and text-generation tasks do not seed."""
    from nemo_taskseed.registry.extractors import VERIFIER_KINDS

    rows = {r["task"]: r for r in catalog.eligible}
    assert all(r["verifier"] in VERIFIER_KINDS and r["verifier_reason"] for r in catalog.eligible)
    assert all(r["verifier"] == "multiple_choice" for r in catalog.eligible if r["format"] == "multiple_choice")
    # Math by its answer filter or \boxed{} answers, whatever the family is called.
    for task in (
        "gsm8k",
        "tinyGSM8k",
        "leaderboard_math_algebra_hard",
        "mgsm_direct_ca",
        "mgsm_direct_gl",
        "hendrycks_math_algebra",
        "minerva_math_algebra",
        "afrimgsm_cot_amh_prompt_1",
    ):
        assert rows[task]["verifier"] == "math", (task, rows[task]["verifier_reason"])
    assert "#### " in rows["tinyGSM8k"]["verifier_reason"]
    assert sum(r["task"].startswith("afrimgsm") and r["verifier"] == "math" for r in catalog.eligible) >= 95
    assert rows["mbpp"]["verifier"] == "code" and rows["triviaqa"]["verifier"] == "short_answer"
    # Translation, summarization, code-to-text and structured output are not question answering.
    not_qa = {r["task"]: r for r in catalog.excluded if r["reason_code"] == "not_qa"}
    assert {"wmt16-de-en", "code2text_python", "jsonschema_bench_easy"} <= set(not_qa), sorted(not_qa)[:20]
    assert "bleu" in not_qa["wmt16-de-en"]["reason"] or "wmt" in not_qa["wmt16-de-en"]["reason"]
    # A question about translations is still a question (bbh's salient-translation task is multiple choice
    # or exact match, never excluded by its name).
    assert not any("salient_translation" in t for t in not_qa)
    counts = catalog.counts()["by_verifier"]
    assert sum(counts.values()) == len(catalog.eligible) and counts["math"] >= 150


def test_unsuitable_sources_never_seed_by_default_and_say_why(catalog):
    """Toxic statements as content, credentialed clinical data and no-derivatives licenses are
    excluded by the default config, each with its reason."""
    excluded = {r["task"]: r for r in catalog.excluded}
    eligible = {r["task"] for r in catalog.eligible}
    toxigen = [t for t in excluded if t.startswith("toxigen")]
    assert toxigen and "hateful statements" in excluded[toxigen[0]]["reason"]
    mimic = [t for t in excluded if t.startswith("mimic_repsum")]
    assert mimic and "credentialed" in excluded[mimic[0]]["reason"]
    kmmlu = [r for r in catalog.excluded if r["family"] == "kmmlu" and r["reason_code"] == "license"]
    assert kmmlu and "forbids derivatives" in kmmlu[0]["reason"]
    assert not any(t.startswith(("toxigen", "mimic_repsum")) for t in eligible)
    assert not any(r["license"].startswith("cc-by-nd") for r in catalog.eligible)


def test_subtasks_on_one_source_have_one_canonical_task(catalog):
    """Same dataset, config, data files, split and process_docs: one canonical task, the others aliases."""
    rows = {r["task"]: r for r in catalog.eligible}
    assert rows["gsm8k"]["aliases"] == ["gsm8k_cot_zeroshot"]
    assert rows["gsm8k_cot_zeroshot"]["canonical_task"] == "gsm8k" and rows["gsm8k_cot_zeroshot"]["aliases"] == []
    assert rows["boolq"]["aliases"] == ["boolq-seq2seq", "super_glue-boolq-t5-prompt"]
    prompts = [f"afrimgsm_cot_amh_prompt_{i}" for i in range(1, 6)]
    assert {rows[t]["canonical_task"] for t in prompts} == {"afrimgsm_cot_amh_prompt_1"}
    # One split, rows selected by process_docs (tydiqa's languages): different sources.
    tydiqa = [r for r in catalog.eligible if r["task"].startswith("tydiqa_goldp_")]
    assert len(tydiqa) == 9 and len({r["source_key"] for r in tydiqa}) == 9
    assert all(r["canonical_task"] == r["task"] for r in tydiqa)
    # Other data (ARC-Easy vs ARC-Challenge) stays apart.
    assert (
        rows["arc_easy"]["canonical_task"] == "arc_easy" and rows["arc_challenge"]["canonical_task"] == "arc_challenge"
    )
    counts = catalog.counts()
    assert counts["distinct_sources"] == sum(r["canonical_task"] == r["task"] for r in catalog.eligible)
    declared = [r for r in catalog.eligible if r["split_role"] != "fewshot_split"]
    # Measured with stock lm-eval 0.4.13: 405 training-split subtasks read 260 distinct sources.
    assert 250 <= sum(r["canonical_task"] == r["task"] for r in declared) < 300


def test_leak_rule_scored_vs_conservative(catalog):
    """A validation split declared next to a test split is not what lm-eval scores: the conservative
    default excludes it as declared_eval_split (not `leak`); leak_rule=scored lets it seed."""
    excluded = {r["task"]: r for r in catalog.excluded}
    declared = [r for r in catalog.excluded if r["reason_code"] == "declared_eval_split"]
    assert len(declared) > 1000  # measured: 1,757 with stock lm-eval 0.4.13
    example = excluded["afrimmlu_direct_amh_prompt_1"]
    assert example["reason_code"] == "declared_eval_split" and "does not score" in example["reason"]
    scored = build_catalog(load_config(overrides=["catalog.leak_rule=scored"]).catalog)
    rows = {r["task"]: r for r in scored.eligible}
    assert rows["afrimmlu_direct_amh_prompt_1"]["split"] == "validation"
    assert "leak_rule=scored" in rows["afrimmlu_direct_amh_prompt_1"]["split_reason"]
    # What a task scores stays a leak under both rules.
    assert {r["task"] for r in scored.excluded if r["reason_code"] == "leak"} == {
        r["task"] for r in catalog.excluded if r["reason_code"] == "leak"
    }
    assert "declared_eval_split" not in scored.counts()["excluded_by_reason"]
    with pytest.raises(UserError, match="catalog.leak_rule"):
        build_catalog(load_config(overrides=["catalog.leak_rule=sometimes"]).catalog, use_cache=False)


def test_capability_families_span_lm_eval_folders_with_one_kind(catalog):
    """ARC is one family, knowledge, in arc/, arc_mt/, okapi/ and tinyBenchmarks/ (it was knowledge in
    two folders and reasoning in the others); okapi's ARC, HellaSwag and MMLU translations split up."""
    rows = {r["task"]: r for r in catalog.eligible}
    arc = ["arc_easy", "arc_challenge", "arc_challenge_mt_de", "arc_de", "tinyArc"]
    assert {rows[t]["family"] for t in arc} == {"arc"} and {rows[t]["kind"] for t in arc} == {"knowledge"}
    assert {rows[t]["folder"] for t in arc} == {"arc", "arc_mt", "okapi", "tinyBenchmarks"}
    assert rows["tinyGSM8k"]["family"] == "gsm8k" and rows["tinyGSM8k"]["kind"] == "reasoning"
    assert rows["tinyHellaswag"]["family"] == "hellaswag" and rows["tinyMMLU"]["family"] == "mmlu"
    assert "capability family 'arc'" in rows["tinyArc"]["family_reason"]
    assert {
        rows[t]["family"] for t in ("hendrycks_math_algebra", "minerva_math_algebra", "leaderboard_math_algebra_hard")
    } == {"hendrycks_math"}
    # Unmapped subtasks keep their folder as family; tydiqa (gold passage given) is reasoning by the rule.
    assert rows["drop"]["family"] == "drop" and rows["tydiqa_goldp_en"]["kind"] == "reasoning"
    families: dict[str, set] = {}
    for r in catalog.eligible:
        families.setdefault(r["family"], set()).add(r["kind"])
    assert all(len(kinds) == 1 for kinds in families.values()), {f: k for f, k in families.items() if len(k) > 1}
    # A family name selects it across folders; a folder name still selects the folder.
    selected = {r["task"] for r in load_catalog_rows(load_config().catalog, ["arc"], dedup_sources=False)}
    assert {"arc_easy", "arc_de", "tinyArc"} <= selected
    assert {r["task"] for r in load_catalog_rows(load_config().catalog, ["arc_mt"])} == {
        r["task"] for r in catalog.eligible if r["folder"] == "arc_mt"
    }


def test_capability_map_errors_name_the_key(tmp_path):
    bad = tmp_path / "caps.yaml"
    bad.write_text("families:\n  arc: {kind: science, match: ['arc/*']}\n")
    with pytest.raises(UserError, match="families.arc.kind"):
        build_catalog(load_config(overrides=[f"catalog.capability_map={bad}"]).catalog)
    with pytest.raises(UserError, match="catalog.capability_map: no such file"):
        build_catalog(load_config(overrides=["catalog.capability_map=nope.yaml"]).catalog)


def test_paper_comparison_counts_the_training_split_catalog(catalog):
    """The numbers `taskseed catalog` puts next to the paper's (docs/catalog.md), measured with
    stock lm-eval 0.4.13: 50 capability families (61 folders), 405 subtasks, 260 sources,
    64 knowledge : 196 reasoning, 158 non-English sources, 69 of 89 dataset paths licensed."""
    from nemo_taskseed.catalog.report import paper_comparison

    cfg = load_config().catalog
    c = paper_comparison(catalog, cfg.compatible_licenses)
    assert c["subtasks"] == sum(r["split_role"] != "fewshot_split" for r in catalog.eligible)
    assert c["knowledge_sources"] + c["reasoning_sources"] == c["distinct_sources"] < c["subtasks"]
    assert 45 <= c["families"] < c["lm_eval_folders"]
    assert c["knowledge_sources"] >= 60 and c["non_english_sources"] > c["distinct_sources"] / 2
    assert len(c["unknown_license_paths"]) == c["dataset_paths"] - c["dataset_paths_with_license"]
    assert "allenai/openbookqa" in c["unknown_license_paths"]
    assert "google-research-datasets/paws-x" not in c["unknown_license_paths"]
    rows = {r["task"]: r for r in catalog.eligible}
    assert (
        rows["xnli_de"]["language"],
        rows["arc_easy"]["language"],
        rows["afrimgsm_cot_amh_prompt_1"]["language"],
        rows["copa_ca"]["language"],
    ) == ("de", "en", "amh", "ca")
    # Every license claim says where it is from.
    assert (
        "dataset card" in rows["arc_easy"]["license_source"]
        and "gives no license" in rows["openbookqa"]["license_source"]
    )
    assert rows["drop"]["license_source"] is not None
    assert rows["xnli_de"]["license"] == "cc-by-nc-4.0" and "facebookresearch/XNLI" in rows["xnli_de"]["license_source"]
    # A path catalog.licenses does not list is unknown, with no source.
    unlisted = LicenseTable({}, [])
    assert unlisted("org/unlisted") == "unknown" and unlisted.source("org/unlisted") is None
    # No-derivatives licenses found for issue 14 drop these Catalan subtasks from the default catalog.
    excluded = {r["task"]: r for r in catalog.excluded}
    assert all(excluded[t]["reason_code"] == "license" for t in ("coqcat", "parafraseja", "teca"))
    assert rows["paws_de"]["license"] == "other-free-use" and "Google" in rows["paws_de"]["license_source"]
    with pytest.raises(UserError, match="catalog.licenses.org/x: give both"):
        build_catalog(load_config(overrides=["catalog.licenses.org/x={license: mit}"]).catalog)


def test_language_skips_variant_markers_after_the_code():
    """The language is read from the task name's last code, past variant markers and numbers
    (xnli_eu_mt is machine-translated Basque; it used to come out as English)."""
    from nemo_taskseed.catalog.build import CapabilityMap

    capabilities, _ = CapabilityMap.from_config("capabilities.yaml")
    assert capabilities.language("xnli", "xnli_eu_mt", None) == "eu"
    assert capabilities.language("xnli", "xnli_eu_native", None) == "eu"
    assert capabilities.language("arc_mt", "arc_challenge_mt_fi", None) == "fi"
    assert capabilities.language("afrimgsm", "afrimgsm_cot_amh_prompt_1", None) == "amh"
    assert capabilities.language("xnli", "xnli_de", None) == "de"
    assert capabilities.language("arc", "arc_easy", None) == "en"
    assert capabilities.language("kobest", "kobest_boolq", None) == "ko"


@pytest.mark.parametrize(
    "task, family, kind, why",
    [
        ("arc_easy", "arc", "multiple_choice", "output_type multiple_choice"),
        ("gsm8k", "gsm8k", "math", "numeric answer filter"),  # "#### (\-?[0-9\.\,]+)"
        ("minerva_math500", "minerva_math", "math", "'minerva' in its name"),
        ("humaneval", "humaneval", "code", "pass@k metric"),
        ("mbpp", "mbpp", "code", "the program runs against the tests"),
        ("wmt16-de-en", "translation", "not_qa", "scored by bleu"),
        ("triviaqa", "triviaqa", "short_answer", "exact_match"),
    ],
)
def test_answer_check_rules_on_stock_task_yamls(task, family, kind, why):
    """Each rule of catalog/verifiers.py on the config lm-eval ships for the task (read as the
    catalog reads it: includes merged, no task code imported). The catalog above is served from its
    cache once built; this runs the rules every time."""
    from nemo_taskseed.catalog.build import _format_of
    from nemo_taskseed.catalog.verifiers import verifier_for
    from nemo_taskseed.utils.lm_eval_yaml import load_task_yaml, task_yaml_path

    path = task_yaml_path(task)
    assert path is not None, f"lm-eval ships no YAML for {task}"
    cfg = load_task_yaml(path)
    got, reason = verifier_for(task, family, cfg, _format_of(cfg.get("output_type") or "generate_until"))
    assert (got, why in reason) == (kind, True), reason
