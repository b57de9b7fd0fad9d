"""Probes against the code sandbox, each with a real process doing what model-written code could do:
forge the verdict, write or read outside, leave processes behind, reach the network or a host
socket, fork without end, fill every writable path, flood its output. Each must fail the check or
be blocked (filter/verify/sandbox.py), on this node's bubblewrap and through the HTTP service
(filter/verify/sandbox_server.py, a local instance started here): the same suite for both."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace

import psutil
import pytest

from nemo_taskseed.config import load_config
from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.verify.sandbox import CodeSettings, bwrap_path, run_code_tests, split_test

needs_bwrap = pytest.mark.skipif(
    bwrap_path() is None, reason="bubblewrap is not installed (scripts/setup.sh installs it)"
)

WRONG = "def f(x):\n    return 1\n"  # the tests below expect f(1) == 2


@pytest.fixture(scope="module")
def service():
    """The HTTP sandbox service on a free port of this machine; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nemo_taskseed.filter.verify.sandbox_server", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    m = re.search(r"http://\S+", line)
    if m is None:
        proc.kill()
        pytest.fail(f"the sandbox service did not start: {line} {proc.stderr.read()[-2000:]}")
    yield m.group(0)
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(params=["local", pytest.param("http", marks=pytest.mark.subprocess)])  # http: a server process
def where(request) -> dict:
    """run_code_tests arguments selecting the sandbox: this node's, or the service's."""
    if request.param == "http":
        return {"sandbox": "http", "sandbox_url": request.getfixturevalue("service")}
    return {"sandbox": "local"}


@pytest.fixture(scope="module")
def configured() -> dict:
    return dict(load_config()["filter"]["verify"]["code"])


@pytest.fixture
def settings(configured, where) -> CodeSettings:
    """The configured limits (configs/base/filter.yaml), with the sandbox chosen by `where`."""
    return CodeSettings.from_config(configured, **where)


@needs_bwrap
def test_the_verdict_cannot_be_forged_from_inside(where):
    forgeries = {
        # Report lines written to every open descriptor, guessing a "true" value.
        "every_fd": WRONG
        + (
            "import os, json\n"
            "for fd in map(int, os.listdir('/proc/self/fd')):\n"
            "    try: os.write(fd, (json.dumps({'i': 0, 'v': ['const', True]}) + '\\n').encode())\n"
            "    except OSError: pass\n"
        ),
        # Reach into the harness: drop the tests, or end the process as if all were done.
        "clear_tests": WRONG + "import __main__\n__main__.payload['exprs'].clear()\n",
        "exit_zero": WRONG + "import os\nos._exit(0)\n",
        "patch_encoder": WRONG + "import __main__\n__main__._encode = lambda v, depth=0: ['int', '2']\n",
    }
    for name, code in forgeries.items():
        res = run_code_tests(code, ["assert f(1) == 2"], timeout_s=10, **where)
        # The expected value 2 never enters the sandbox: a forger has to guess it. The encoder
        # patch above is the guess written in: it holds only because 2 is what it returns.
        if name == "patch_encoder":
            assert res.status == "passed", res  # = computing the answer; see the next assertion
            assert run_code_tests(code, ["assert f(1) == 3"], timeout_s=10, **where).status == "failed"
        else:
            assert res.status in ("failed", "error"), (name, res)
    # The honest solution passes.
    assert run_code_tests("def f(x):\n    return 2\n", ["assert f(1) == 2"], timeout_s=10, **where).passed


@needs_bwrap
def test_code_cannot_write_or_read_host_files(tmp_path, where):
    host_file = tmp_path / "host.txt"
    host_file.write_text("original\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    code = (
        "def write_host():\n"
        f"    with open({str(host_file)!r}, 'a') as fh:\n"
        "        fh.write('appended')\n"
        "    return True\n"
        "def write_tmp():\n"
        "    open('/tmp/taskseed_probe_marker', 'w').write('x')\n"
        "    return True\n"
        "def read_secret():\n"
        f"    return open({str(secret)!r}).read()\n"
    )
    assert run_code_tests(code, ["assert write_host()"], timeout_s=10, **where).status == "failed"
    assert run_code_tests(code, ["assert write_tmp()"], timeout_s=10, **where).passed  # a private /tmp
    assert run_code_tests(code, ["assert read_secret() == 's3cret'"], timeout_s=10, **where).status == "failed"
    assert host_file.read_text() == "original\n"
    assert not os.path.exists("/tmp/taskseed_probe_marker")


def _alive(marker: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()


@needs_bwrap
def test_no_process_outlives_the_check_or_stretches_its_timeout(where):
    daemon = (
        "import os, time\n"
        "def f(x):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            os.execv('/bin/sleep', ['sleep', '61.2345'])\n"
        "        os._exit(0)\n"
        "    return 2\n"
    )
    res = run_code_tests(daemon, ["assert f(1) == 2"], timeout_s=10, **where)
    assert res.passed
    time.sleep(0.5)
    assert _alive("sleep 61.2345") == []
    setsid_child = (
        "import subprocess\n"
        "def f(x):\n"
        "    subprocess.Popen(['/bin/sleep', '62.3456'], start_new_session=True)\n"
        "    return 2\n"
    )
    start = time.monotonic()
    res = run_code_tests(setsid_child, ["assert f(1) == 2"], timeout_s=5, **where)
    assert res.passed and time.monotonic() - start < 5, res
    time.sleep(0.5)
    assert _alive("sleep 62.3456") == []


@needs_bwrap
def test_no_network_and_no_host_unix_socket(tmp_path, where):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    accepted: list = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    raw = (
        "import _socket\n"
        "def f(x):\n"
        "    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
        f"    s.connect(('127.0.0.1', {port}))\n"
        "    return 2\n"
    )
    assert run_code_tests(raw, ["assert f(1) == 2"], timeout_s=10, **where).status == "failed"
    unix_path = tmp_path / "host.sock"
    host_unix = socket.socket(socket.AF_UNIX)
    host_unix.bind(str(unix_path))
    host_unix.listen()
    via_unix = (
        "import socket\n"
        "def f(x):\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        f"    s.connect({str(unix_path)!r})\n"
        "    return 2\n"
    )
    assert run_code_tests(via_unix, ["assert f(1) == 2"], timeout_s=10, **where).status == "failed"
    time.sleep(0.2)
    assert accepted == []
    server.close()
    host_unix.close()


# ---- processes and writes: bounded for the whole sandbox ------------------------------------------

# Starts 2,000 sleeping children (or threads), then returns 2; prints how many it started.
FORK_BOMB = (
    "import os, sys, threading, time\n"
    "def forks(x):\n"
    "    n = 0\n"
    "    try:\n"
    "        for _ in range(2000):\n"
    "            if os.fork() == 0:\n"
    "                time.sleep(60)\n"
    "                os._exit(0)\n"
    "            n += 1\n"
    "    finally:\n"
    "        print('started', n, file=sys.stderr)\n"
    "    return 2\n"
    "def threads(x):\n"
    "    n = 0\n"
    "    try:\n"
    "        for _ in range(2000):\n"
    "            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
    "            n += 1\n"
    "    finally:\n"
    "        print('started', n, file=sys.stderr)\n"
    "    return 2\n"
)


def started(res) -> int:
    return int(re.search(r"started (\d+)", res.stderr_tail).group(1))


def host_processes() -> tuple[int, int]:
    """(processes descended from this test process, sandboxes and the service included; every
    process on the host)."""
    return len(psutil.Process().children(recursive=True)), len(psutil.pids())


def assert_back_to(before: tuple[int, int]) -> None:
    # Ours exactly (the sandbox is gone when the call returns; a moment for the service's reply);
    # the host's with room for other work on this machine, far below a fork bomb's 2,000.
    deadline = time.monotonic() + 2
    while host_processes()[0] != before[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    after = host_processes()
    assert after[0] == before[0], (before, after)
    assert after[1] <= before[1] + 25, (before, after)


@needs_bwrap
@pytest.mark.parametrize("kind", ["forks", "threads"])
def test_a_fork_bomb_is_bounded_for_the_whole_sandbox(settings, kind):
    before = host_processes()
    start = time.monotonic()
    res = run_code_tests(FORK_BOMB, [f"assert {kind}(1) == 2"], settings=settings)
    seconds = time.monotonic() - start
    assert res.status in ("failed", "error"), res  # code_failed / code_error, not a pass
    assert seconds < settings.timeout_s, res
    # bwrap's own 3 tasks and the program's started ones: max_processes in all.
    assert 1 <= started(res) <= settings.max_processes - 3, res
    assert res.unbounded == (), res
    assert_back_to(before)


# Writes 500 files of 1 MiB (RLIMIT_FSIZE is 1 MiB a file) into a folder; prints how much it wrote.
FILL = (
    "import os, sys\n"
    "def fill(folder):\n"
    "    written = 0\n"
    "    block = b'x' * (1 << 20)\n"
    "    try:\n"
    "        for i in range(500):\n"
    "            with open(os.path.join(folder, f'fill{i}'), 'wb') as fh:\n"
    "                fh.write(block)\n"
    "            written += len(block)\n"
    "    finally:\n"
    "        print('written', written, file=sys.stderr)\n"
    "    return True\n"
)


@needs_bwrap
@pytest.mark.parametrize("folder", ["/tmp", "/dev/shm", "/sandbox", "/", "/dev"])
def test_500_mib_into_any_path_is_refused_at_the_configured_size(settings, folder):
    before = host_processes()
    res = run_code_tests(FILL, [f"assert fill({folder!r})"], settings=settings)
    assert res.status == "failed", res
    assert res.seconds < settings.timeout_s, res
    written = int(re.search(r"written (\d+)", res.stderr_tail).group(1))
    if folder in ("/", "/dev"):  # bwrap's root and /dev are made read-only
        assert written == 0 and "Read-only file system" in res.stderr_tail, res
    else:  # a tmpfs of write_mb: full at exactly the configured size
        assert written == settings.write_mb << 20 and "No space left on device" in res.stderr_tail, res
    assert_back_to(before)


@needs_bwrap
def test_output_floods_do_not_fill_the_host(settings):
    # 500 MiB of prints: only the end of stderr is kept; printing is allowed, so it passes. (The
    # time it takes is the pipe's, not the bound's: a loaded machine gets more than timeout_s.)
    prints = "import sys\ndef f():\n    for _ in range(500):\n        sys.stderr.write('x' * (1 << 20))\n    return 2\n"
    res = run_code_tests(prints, ["assert f() == 2"], settings=replace(settings, timeout_s=60.0))
    assert res.passed, res
    # 500 MiB into every descriptor, the report channel among them: stopped as an error at its cap.
    flood = (
        "import os\n"
        "def f():\n"
        "    block = b'x' * (1 << 20)\n"
        "    for fd in range(3, 16):\n"
        "        try:\n"
        "            for _ in range(500):\n"
        "                os.write(fd, block)\n"
        "        except OSError:\n"
        "            pass\n"
        "    return 2\n"
    )
    res = run_code_tests(flood, ["assert f() == 2"], settings=settings)
    assert res.status == "error" and "report channel" in res.stderr_tail and len(res.stderr_tail) <= 500, res
    assert res.seconds < settings.timeout_s, res


def test_tests_that_cannot_be_judged_outside_fail_and_no_sandbox_means_no_run(monkeypatch):
    assert split_test("assert f(1) == {'a': (1, 2.5)}").expected == {"a": (1, 2.5)}
    assert split_test("assert set(f(2)) == set([1, 2])").expected == {1, 2}
    # An expected value computed by item code would have to run outside the sandbox: refused.
    res = run_code_tests("def f(x):\n    return 2\n", ["assert f(1) == g(1)"], timeout_s=10)
    assert res.status == "unverifiable_test" and res.failed_test == 0
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UserError, match="needs bubblewrap"):
        run_code_tests("def f(x):\n    return 2\n", ["assert f(1) == 2"], timeout_s=10)
    unsafe = run_code_tests("def f(x):\n    return 2\n", ["assert f(1) == 2"], timeout_s=10, unsafe_no_sandbox=True)
    assert unsafe.passed and unsafe.sandbox == "none" and unsafe.unbounded == ("processes", "writes")


@needs_bwrap
def test_the_service_in_a_thread_judges_and_refuses_bad_requests():
    """The HTTP service's request handling (sandbox_server.py) on a thread of this process: the
    same server class `python -m ...sandbox_server` runs, without starting a process for it."""
    import json
    import urllib.error
    import urllib.request

    from nemo_taskseed.filter.verify.sandbox_server import MAX_LIMITS, _SandboxServer

    server = _SandboxServer(("127.0.0.1", 0), workers=1, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"

    def call(path: str, body: bytes | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(url + path, data=body, method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        status, health = call("/health")
        assert status == 200 and health["ok"] and health["unbounded"] == health["bounds"]["unbounded"]
        assert run_code_tests(
            "def f(x):\n    return 2\n", ["assert f(1) == 2"], timeout_s=10, sandbox="http", sandbox_url=url
        ).passed
        assert not run_code_tests(WRONG, ["assert f(1) == 2"], timeout_s=10, sandbox="http", sandbox_url=url).passed
        limits = {"timeout_s": 5, "memory_mb": 256, "max_processes": 16, "write_mb": 8}
        too_long = dict(limits, timeout_s=MAX_LIMITS.timeout_s + 1)
        status, body = call("/run", json.dumps({"code": "x = 1", "exprs": [], "limits": too_long}).encode())
        assert status == 400 and "over this service's maximum" in body["error"]
        status, body = call("/run", json.dumps({"code": 1, "exprs": [], "limits": limits}).encode())
        assert status == 400 and "code must be a string" in body["error"]
        status, body = call("/run", b"not json")
        assert status == 400 and body["error"].startswith("bad request")
        assert call("/nowhere")[0] == 404 and call("/nowhere", b"{}")[0] == 404
    finally:
        server.shutdown()
        server.server_close()
