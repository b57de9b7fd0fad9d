"""Run a generated solution against its generated tests in a constrained subprocess.

Limits: wall-clock timeout (the process group is killed), CPU seconds and address space via
`resource.setrlimit`, no file larger than 1 MB, an empty temporary working directory, a minimal
environment, `python -I` (no user site, no PYTHONPATH). No network: on Linux the child runs in a
new network namespace (`unshare -rn`) when unprivileged user namespaces are available; in any
case `socket` is replaced before the solution runs, so a connect attempt raises.

This is a guard against accidents in model-written code (infinite loops, memory blow-ups, stray
network calls), not a security boundary against hostile code: run untrusted generations in a
container as well.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

# Executed in the child before the candidate code: cut the network, then run code + tests.
_HARNESS = r'''
import json, socket, sys
def _no_network(*a, **k):
    raise OSError("network disabled in the taskseed sandbox")
# Methods, not the class: ssl subclasses socket.socket at import time.
socket.socket.connect = socket.socket.connect_ex = socket.socket.sendto = _no_network
socket.create_connection = _no_network
socket.getaddrinfo = _no_network
import os
with open(sys.argv[1]) as fh:
    payload = json.load(fh)
os.remove(sys.argv[1])  # the code under test must not read the completion token
token, out = payload["token"], sys.stdout
ns = {"__name__": "__taskseed_sandbox__"}
exec(compile(payload["code"], "<solution>", "exec"), ns)
for i, test in enumerate(payload["tests"]):
    try:
        exec(compile(test, f"<test {i}>", "exec"), ns)
    except AssertionError:
        print(json.dumps({"failed_test": i}), file=sys.stderr)
        sys.exit(3)
# Only a run that reaches this line passes: exit(0) or os._exit(0) inside the code does not.
out.write(token)
out.flush()
'''


@dataclass(frozen=True)
class SandboxResult:
    status: str  # passed | failed | error | timeout
    returncode: int | None
    seconds: float
    failed_test: int | None = None
    stderr_tail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


@functools.lru_cache(maxsize=1)
def _netns_prefix() -> tuple[str, ...]:
    """`unshare -rn` when it works here (unprivileged user + network namespaces), else nothing."""
    exe = shutil.which("unshare")
    if not exe or not sys.platform.startswith("linux"):
        return ()
    try:
        ok = subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return (exe, "-rn") if ok else ()


def _limits(cpu_seconds: int, memory_mb: int):
    def apply() -> None:
        import resource

        os.setsid()  # own process group: a timeout kills children too
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        mem = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run_code_tests(
    code: str,
    tests: list[str],
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    setup_code: str = "",
    python: str | None = None,
) -> SandboxResult:
    """Run `setup_code + code`, then each assert of `tests`; passed only when all hold."""
    if not tests:
        return SandboxResult("error", None, 0.0, stderr_tail="no tests to run")
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="taskseed-sandbox-") as tmp:
        payload = os.path.join(tmp, "payload.json")
        harness = os.path.join(tmp, "harness.py")
        with open(payload, "w", encoding="utf-8") as fh:
            json.dump({"code": (setup_code + "\n" + code) if setup_code else code, "tests": list(tests), "token": token}, fh)
        with open(harness, "w", encoding="utf-8") as fh:
            fh.write(_HARNESS)
        cmd = [*_netns_prefix(), python or sys.executable, "-I", "-B", harness, payload]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=_limits(max(1, int(timeout_s) + 1), memory_mb),
        )
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            return SandboxResult("timeout", None, round(time.monotonic() - start, 3), stderr_tail=f"killed after {timeout_s}s")
        seconds = round(time.monotonic() - start, 3)
        tail = err.decode("utf-8", "replace")[-500:]
        if proc.returncode == 0 and out.decode("utf-8", "replace").endswith(token):
            return SandboxResult("passed", 0, seconds)
        if proc.returncode == 0:
            return SandboxResult("error", 0, seconds, stderr_tail="exited before running every test")
        if proc.returncode == 3:
            failed = None
            try:
                failed = json.loads(tail.strip().splitlines()[-1]).get("failed_test")
            except (ValueError, IndexError, AttributeError):
                pass
            return SandboxResult("failed", 3, seconds, failed, tail)
        if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            return SandboxResult("timeout", proc.returncode, seconds, stderr_tail=tail)
        return SandboxResult("error", proc.returncode, seconds, stderr_tail=tail)
