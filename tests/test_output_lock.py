"""One run per output folder, with real processes: a second run fails at once naming the holder;
a holder killed with -9 leaves no lock behind, even while a child it forked lives on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from nemo_taskseed.errors import UserError
from nemo_taskseed.pipeline.lock import output_lock

HOLDER = textwrap.dedent("""
    import os, sys, time
    from nemo_taskseed.pipeline.lock import output_lock
    with output_lock(sys.argv[1], "generate"):
        if sys.argv[2] == "fork" and os.fork() == 0:
            time.sleep(120)  # a forked child (as vLLM forks its engine) outliving the holder
            os._exit(0)
        print("held", flush=True)
        time.sleep(120)
""")


def _start_holder(folder, mode="plain"):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), mode], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.subprocess
def test_a_second_run_on_a_held_folder_fails_naming_the_holder(tmp_path):
    out = tmp_path / "out"
    holder = _start_holder(out)
    try:
        gen = tmp_path / "generate"
        (gen / "generated").mkdir(parents=True)
        proc = subprocess.run(
            [sys.executable, "-m", "nemo_taskseed", "filter", "--in", str(gen), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert f"is in use by `generate` pid {holder.pid} on " in proc.stderr
        assert "Traceback" not in proc.stderr
        with pytest.raises(UserError, match="one run per output folder"):
            with output_lock(out, "tokenize"):
                pass
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()


def test_a_killed_holder_leaves_no_lock_even_with_a_forked_child_alive(tmp_path):
    out = tmp_path / "out"
    holder = _start_holder(out, mode="fork")
    try:
        children = subprocess.run(["pgrep", "-P", str(holder.pid)], capture_output=True, text=True).stdout.split()
        assert children, "the holder forked a child"
        holder.kill()  # SIGKILL: no cleanup runs
        holder.wait()
        assert all(os.path.exists(f"/proc/{c}") for c in children)  # the child lives on
        with output_lock(out, "generate"):  # taken at once: the lock died with its process
            pass
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
    time.sleep(0.1)


def test_the_same_process_may_nest_its_own_lock(tmp_path):
    with output_lock(tmp_path, "filter"):
        with output_lock(tmp_path / ".", "filter"):  # run_step -> run_filter on the same folder
            pass
        # still held by this process: another process is refused
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                textwrap.dedent(f"""
            from nemo_taskseed.pipeline.lock import output_lock
            from nemo_taskseed.errors import UserError
            try:
                with output_lock({str(tmp_path)!r}, "x"):
                    print("taken")
            except UserError as exc:
                print("refused", exc)
        """),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.stdout.startswith("refused") and f"pid {os.getpid()}" in proc.stdout, proc.stdout + proc.stderr
