"""How the code sandbox bounds processes on this node, what happens where it cannot, and the HTTP
service's own contract (filter/verify/sandbox.py, sandbox_server.py; docs/filter.md).

The probes in test_sandbox_probes.py run with whatever mechanism this node offers (a pids cgroup
here). These force each mechanism in turn: RLIMIT_NPROC inside the sandbox's user namespace (the
one left on a node without a delegated cgroup), and none at all (the summary must say so).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest
from test_sandbox_probes import FORK_BOMB, assert_back_to, host_processes, service, started  # noqa: F401

from nemo_taskseed.config import load_config
from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.verify import sandbox
from nemo_taskseed.filter.verify.sandbox import CodeSettings, bwrap_path, run_code_tests, sandbox_warnings

pytestmark = pytest.mark.skipif(bwrap_path() is None, reason="bubblewrap is not installed")

# Forks sleepers that leave their session, then spins: only the wall clock ends it.
SPIN = (
    "import os, time\n"
    "def f():\n"
    "    for _ in range(20):\n"
    "        if os.fork() == 0:\n"
    "            os.setsid()\n"
    "            time.sleep(300)\n"
    "            os._exit(0)\n"
    "    while True:\n"
    "        pass\n"
)


def nproc_python() -> str | None:
    """An interpreter uid 65534 can reach, for a root caller (the venv's base here is under /root,
    mode 0700); a caller that is not root runs its own."""
    if os.geteuid() != 0:
        return None
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("as root the nproc bound needs an interpreter uid 65534 can read (/usr/bin/python3)")
    return "/usr/bin/python3"


@pytest.fixture(params=["cgroup", "nproc"])
def mechanism(request, monkeypatch) -> dict:
    """Each process bound on its own; skipped where this node cannot offer it."""
    monkeypatch.setattr(sandbox, "PROCESS_BOUNDS", (request.param,))
    python = nproc_python() if request.param == "nproc" else None
    plan = sandbox.sandbox_plan(python)
    if plan["processes"] is None:
        pytest.skip(f"no {request.param} bound on this node: {plan['unbounded']['processes']}")
    return {"python": python, "plan": plan}


def test_each_mechanism_bounds_a_fork_bomb_and_cleans_up_after_a_timeout(mechanism):
    kind = "pids cgroup" if mechanism["plan"]["processes"].startswith("pids cgroup") else "RLIMIT_NPROC"
    assert kind in mechanism["plan"]["processes"]
    # 150 other processes of the uid the sandbox runs as (65534 when this is root): RLIMIT_NPROC
    # must count the sandbox's own tasks, not these (as on a GPU node, vLLM's and Ray's threads).
    uid = 65534 if os.geteuid() == 0 and kind == "RLIMIT_NPROC" else None
    # Started by one shell (a fork of this large test process each would take seconds in all).
    others = subprocess.Popen(
        ["sh", "-c", "for i in $(seq 150); do sleep 30 & done; wait"], user=uid, start_new_session=True
    )
    deadline = time.monotonic() + 10
    while len(psutil.Process(others.pid).children()) < 150 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(psutil.Process(others.pid).children()) == 150
    try:
        before = host_processes()
        res = run_code_tests(FORK_BOMB, ["assert forks(1) == 2"], timeout_s=10, python=mechanism["python"])
        assert res.status in ("failed", "error") and res.seconds < 10, res
        # Both count the same: max_processes tasks, bwrap's 3 among them.
        assert started(res) == 64 - 3, res
        assert_back_to(before)
    finally:
        os.killpg(others.pid, signal.SIGKILL)
        others.wait()
    before = host_processes()
    # A spinning program with detached children: killed at the timeout, none of them left.
    res = run_code_tests(SPIN, ["assert f()"], timeout_s=2, python=mechanism["python"])
    assert res.status == "timeout" and res.seconds < 2 + 5, res  # the kill waits for every process to be gone
    assert_back_to(before)
    if kind == "RLIMIT_NPROC" and os.geteuid() == 0:  # root hands the sandbox to an unprivileged uid
        who = run_code_tests("import os\n", ["assert os.getuid() == 65534"], python=mechanism["python"])
        assert who.passed, who


def test_the_cgroup_of_each_check_is_removed(monkeypatch):
    monkeypatch.setattr(sandbox, "PROCESS_BOUNDS", ("cgroup",))
    plan = sandbox._plan(bwrap_path(), sandbox._python(None))
    if plan.cgroup is None:
        pytest.skip(plan.why[0][1])
    parent = plan.cgroup[1]
    run_code_tests(FORK_BOMB, ["assert forks(1) == 2"])
    assert [n for n in os.listdir(parent) if n.startswith(f"taskseed-sandbox-{os.getpid()}-")] == []


def test_without_a_process_bound_the_result_and_the_summary_say_so(monkeypatch):
    monkeypatch.setattr(sandbox, "PROCESS_BOUNDS", ())
    res = run_code_tests("def f(x):\n    return 2\n", ["assert f(1) == 2"])
    assert res.passed and res.unbounded == ("processes",), res
    settings = CodeSettings.from_config(load_config())
    [warning] = sandbox_warnings(settings)
    assert "cannot bound the number of processes (filter.verify.code.max_processes)" in warning
    # The filter step's summary carries it, as it does a check that is off.
    from nemo_taskseed.filter.settings import FilterSettings
    from nemo_taskseed.filter.summary import data_warnings

    fcfg = FilterSettings.from_config(load_config(None, ["filter.verify.enabled=true"]))
    assert warning in data_warnings(fcfg, {"coverage": [{"loaded": True}]}, None)
    # Where everything holds, nothing is said.
    monkeypatch.setattr(sandbox, "PROCESS_BOUNDS", ("cgroup", "nproc"))
    if not sandbox._plan(bwrap_path(), sandbox._python(None)).why:
        assert sandbox_warnings(settings) == []


def test_settings_name_their_keys():
    cfg = load_config()
    with pytest.raises(UserError, match="filter.verify.code.sandbox_url=http://HOST:PORT"):
        CodeSettings.from_config(cfg, sandbox="http")
    with pytest.raises(UserError, match="filter.verify.code.sandbox must be local or http"):
        CodeSettings.from_config(cfg, sandbox="docker")
    with pytest.raises(UserError, match=r"filter.verify.code: max_processes must be >= 4"):
        CodeSettings.from_config(cfg, max_processes=2)
    with pytest.raises(UserError, match=r"write_mb must be >= 1"):
        CodeSettings.from_config(cfg, write_mb=0)
    http = CodeSettings.from_config(cfg, sandbox="http", sandbox_url="http://127.0.0.1:9")
    assert http.limits == sandbox.Limits(10.0, 512, 64, 64)


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/run", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.subprocess
def test_the_service_reports_its_bounds_and_refuses_bad_requests(service):  # noqa: F811
    with urllib.request.urlopen(service + "/health", timeout=10) as response:
        health = json.loads(response.read())
    assert health["ok"] and health["bounds"]["writes"] == "tmpfs with bwrap --size"
    assert health["unbounded"] == sandbox.sandbox_plan()["unbounded"]  # same node, same plan
    limits = {"timeout_s": 10, "memory_mb": 512, "max_processes": 64, "write_mb": 64}
    status, body = _post(service, json.dumps({"code": "", "exprs": ["1 + 1"], "limits": limits}).encode())
    assert status == 200 and json.loads(body["report"]) == {"i": 0, "v": ["int", "2"]}
    assert body["sandbox"] == "bwrap", body
    status, body = _post(
        service, json.dumps({"code": "", "exprs": ["1"], "limits": {**limits, "timeout_s": 1e6}}).encode()
    )
    assert status == 400 and "over this service's maximum" in body["error"]
    status, body = _post(
        service, json.dumps({"code": "", "exprs": ["1"], "limits": {**limits, "max_processes": 1}}).encode()
    )
    assert status == 400 and "max_processes must be >= 4" in body["error"]
    status, body = _post(service, b"not json")
    assert status == 400 and body["error"].startswith("bad request")
    # The client side: a verdict, with the service named as the sandbox.
    res = run_code_tests("def f(x):\n    return 2\n", ["assert f(1) == 2"], sandbox="http", sandbox_url=service)
    assert res.passed and res.sandbox == "http:bwrap", res
    # The summary's warnings come from the service's node, one per bound it lists as unenforced.
    warnings = sandbox_warnings(CodeSettings.from_config(load_config(), sandbox="http", sandbox_url=service))
    assert len(warnings) == len(health["unbounded"])
    assert all(w.startswith(f"the code sandbox service at {service} cannot bound") for w in warnings)


def test_an_unreachable_service_is_a_clear_error_and_a_warning():
    with socket.socket() as sock:  # a port nothing listens on once the block ends
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(UserError, match=re.escape(f"{url} (filter.verify.code.sandbox_url) cannot be used")):
        run_code_tests("def f(x):\n    return 2\n", ["assert f(1) == 2"], sandbox="http", sandbox_url=url)
    settings = CodeSettings.from_config(load_config(), sandbox="http", sandbox_url=url)
    [warning] = sandbox_warnings(settings)
    assert "did not say which bounds it enforces" in warning


@pytest.mark.subprocess
def test_a_killed_service_leaves_no_sandbox_behind():
    """kill -9 of the service as its sandbox starts or runs: bwrap dies with it (PR_SET_PDEATHSIG,
    set before exec so bwrap's own start is covered too) and the sandbox with bwrap
    (`--die-with-parent`; the PID namespace ends)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nemo_taskseed.filter.verify.sandbox_server", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = re.search(r"http://\S+", proc.stdout.readline()).group(0)
    code = "import time\ndef f():\n    time.sleep(63.4567)\n    return True\n"
    body = {
        "code": code,
        "exprs": ["f()"],
        "limits": {"timeout_s": 60, "memory_mb": 512, "max_processes": 64, "write_mb": 64},
    }
    request = urllib.request.Request(url + "/run", data=json.dumps(body).encode())
    threading.Thread(target=lambda: _quietly(request), daemon=True).start()
    deadline = time.monotonic() + 10
    while not _sandboxes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sandboxes(proc.pid), "the run did not start"
    bwraps = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while [p for p in bwraps if _running(p)]:
        assert time.monotonic() < deadline, [p for p in bwraps if _running(p)]
        time.sleep(0.05)
    # Its cgroup (if the service's node gave it one) is empty now, and the next caller that makes a
    # plan removes it: a dead caller's cgroups do not pile up.
    plan = sandbox._plan(bwrap_path(), sandbox._python(None))
    if plan.cgroup is not None:
        sandbox._remove_stale_cgroups(plan.cgroup[1])
        assert [n for n in os.listdir(plan.cgroup[1]) if n.startswith(f"taskseed-sandbox-{proc.pid}-")] == []


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _sandboxes(pid: int) -> list:
    return [p for p in psutil.Process(pid).children(recursive=True) if p.name() == "bwrap"]


def _quietly(request) -> None:
    try:
        urllib.request.urlopen(request, timeout=70).read()
    except OSError:
        pass
