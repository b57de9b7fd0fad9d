"""Probes against the code sandbox, each with a real process doing what model-written code could do:
forge the verdict, write or read outside, leave processes behind, reach the network or a host
socket. Each must fail the check or be blocked (filter/verify/sandbox.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

import pytest

from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.verify.sandbox import bwrap_path, run_code_tests, split_test

needs_bwrap = pytest.mark.skipif(
    bwrap_path() is None, reason="bubblewrap is not installed (scripts/setup.sh installs it)"
)

WRONG = "def f(x):\n    return 1\n"  # the tests below expect f(1) == 2


@needs_bwrap
def test_the_verdict_cannot_be_forged_from_inside():
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
        res = run_code_tests(code, ["assert f(1) == 2"], timeout_s=10)
        # The expected value 2 never enters the sandbox: a forger has to guess it. The encoder
        # patch above is the guess written in: it holds only because 2 is what it returns.
        if name == "patch_encoder":
            assert res.status == "passed", res  # = computing the answer; see the next assertion
            assert run_code_tests(code, ["assert f(1) == 3"], timeout_s=10).status == "failed"
        else:
            assert res.status in ("failed", "error"), (name, res)
    # The honest solution passes.
    assert run_code_tests("def f(x):\n    return 2\n", ["assert f(1) == 2"], timeout_s=10).passed


@needs_bwrap
def test_code_cannot_write_or_read_host_files(tmp_path):
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
    assert run_code_tests(code, ["assert write_host()"], timeout_s=10).status == "failed"
    assert run_code_tests(code, ["assert write_tmp()"], timeout_s=10).passed  # a private /tmp
    assert run_code_tests(code, ["assert read_secret() == 's3cret'"], timeout_s=10).status == "failed"
    assert host_file.read_text() == "original\n"
    assert not os.path.exists("/tmp/taskseed_probe_marker")


def _alive(marker: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()


@needs_bwrap
def test_no_process_outlives_the_check_or_stretches_its_timeout():
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
    res = run_code_tests(daemon, ["assert f(1) == 2"], timeout_s=10)
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
    res = run_code_tests(setsid_child, ["assert f(1) == 2"], timeout_s=5)
    assert res.passed and time.monotonic() - start < 5, res
    time.sleep(0.5)
    assert _alive("sleep 62.3456") == []


@needs_bwrap
def test_no_network_and_no_host_unix_socket(tmp_path):
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
    assert run_code_tests(raw, ["assert f(1) == 2"], timeout_s=10).status == "failed"
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
    assert run_code_tests(via_unix, ["assert f(1) == 2"], timeout_s=10).status == "failed"
    time.sleep(0.2)
    assert accepted == []
    server.close()
    host_unix.close()


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
    assert unsafe.passed and unsafe.sandbox == "none"
