"""One run of the harness as a child process, and what comes out of it (`RawRun`).

`run_harness` starts the harness in bwrap under a `SandboxPlan` (or, explicitly unsafe, as a plain
subprocess), with rlimits, its pids cgroup and a death signal tied to the caller; it reads the
report channel and the end of stderr until the deadline, and ends the whole sandbox (its PID
namespace) before it returns. It neither judges the values nor chooses the plan.
"""

from __future__ import annotations

import functools
import json
import os
import selectors
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nemo_taskseed.filter.verify.sandbox_bwrap import SandboxPlan, sandbox_command
from nemo_taskseed.filter.verify.sandbox_cgroup import PidsCgroup
from nemo_taskseed.filter.verify.sandbox_harness import HARNESS
from nemo_taskseed.filter.verify.sandbox_settings import MIB, Limits

# The report channel (one JSON line per test) is held in this process's memory: past this size
# the run is stopped as an error, so a program writing to it without end cannot fill the host.
REPORT_CAP_BYTES = 16 * MIB
# Of the program's own output (stderr, where its prints go) only the end is kept, however much it writes.
_STDERR_TAIL_BYTES = 4096


@dataclass(frozen=True)
class RawRun:
    """What came out of one sandbox run, before judging: the report lines, the end of stderr."""

    returncode: int | None
    seconds: float
    report: str
    stderr_tail: str
    timed_out: bool
    overflow: bool
    sandbox: str
    unbounded: tuple[str, ...]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RawRun:
        values = {f: d[f] for f in cls.__dataclass_fields__}
        values["unbounded"] = tuple(values["unbounded"])
        return cls(**values)


_PR_SET_PDEATHSIG = 1


@functools.lru_cache(maxsize=1)
def _prctl():
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl  # loaded here, not between fork and exec


def _preexec(limits: Limits, cgroup_procs: str | None, uid: int | None):
    cpu_seconds = max(1, int(limits.timeout_s) + 1)
    mem = limits.memory_mb * MIB
    prctl, parent = _prctl(), os.getpid()

    def apply() -> None:
        import resource

        os.setsid()  # own process group: a timeout kills bwrap and, with it, the whole sandbox
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (MIB, MIB))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if cgroup_procs is not None:  # before exec: bwrap and all it starts are in the cgroup
            fd = os.open(cgroup_procs, os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
        if uid is not None:  # after the cgroup: nothing of root's is left to do
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        # Die with the caller from here on (after setuid, which clears it), not only once bwrap has
        # set up its own --die-with-parent: a caller killed while bwrap starts would otherwise leave
        # a sandbox that no timeout ends. A caller already gone before this line: stop here.
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return apply


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def run_harness(plan: SandboxPlan | None, python: str, code: str, exprs: list[str], limits: Limits) -> RawRun:
    """One run of the harness: in bwrap under `plan`, or (plan None: unsafe_no_sandbox) a plain subprocess."""
    payload = json.dumps({"code": code, "exprs": exprs}).encode()
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
    cgroup = None
    fds: dict[str, int] = {}
    tmp = None
    try:
        if plan is None:  # explicitly unsafe: a plain subprocess in a temp folder
            tmp = tempfile.TemporaryDirectory(prefix="taskseed-sandbox-")
            for name, data in (("payload.json", payload), ("harness.py", HARNESS.encode())):
                Path(tmp.name, name).write_bytes(data)
            cmd = [
                python,
                "-I",
                "-B",
                os.path.join(tmp.name, "harness.py"),
                os.path.join(tmp.name, "payload.json"),
                "0",
            ]
            cwd, pass_fds, label, unbounded = tmp.name, (), "none", ("processes", "writes")
        else:
            fds["payload"] = _memfd("payload", payload)
            fds["harness"] = _memfd("harness", HARNESS.encode())
            info_r, fds["info"] = os.pipe()
            fds["info_r"] = info_r
            if plan.cgroup is not None:
                cgroup = PidsCgroup(*plan.cgroup, limits.max_processes)
            cmd = sandbox_command(plan, python, limits, fds)
            cwd, label, unbounded = "/", "bwrap", plan.unbounded
            pass_fds = (fds["payload"], fds["harness"], fds["info"])
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            preexec_fn=_preexec(
                limits,
                cgroup.procs if cgroup is not None else None,
                plan.uid if plan is not None else None,
            ),
        )
        for name in ("payload", "harness", "info"):  # the child has its copies
            if name in fds:
                os.close(fds.pop(name))
        try:
            report, tail, timed_out, overflow = _collect(proc, start + limits.timeout_s)
        finally:
            if proc.poll() is None:
                _kill(proc, fds.get("info_r"))
            if cgroup is not None:
                cgroup.close()
                cgroup = None
        seconds = round(time.monotonic() - start, 3)
        return RawRun(
            proc.returncode,
            seconds,
            report.decode("utf-8", "replace"),
            tail.decode("utf-8", "replace")[-500:],
            timed_out,
            overflow,
            label,
            unbounded,
        )
    finally:
        for fd in fds.values():
            os.close(fd)
        if cgroup is not None:
            cgroup.close()
        if tmp is not None:
            tmp.cleanup()


def _collect(proc: subprocess.Popen, deadline: float) -> tuple[bytes, bytes, bool, bool]:
    """Read the report (up to REPORT_CAP_BYTES) and the end of stderr until both close or the deadline."""
    report, tail = bytearray(), bytearray()
    streams = {proc.stdout.fileno(): "out", proc.stderr.fileno(): "err"}
    with selectors.DefaultSelector() as sel:
        for fd in streams:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(report), bytes(tail), True, False
            for key, _ in sel.select(remaining):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fd)
                elif streams[key.fd] == "out":
                    report += chunk
                    if len(report) > REPORT_CAP_BYTES:
                        return bytes(report[:REPORT_CAP_BYTES]), bytes(tail), False, True
                else:
                    tail += chunk
                    del tail[:-_STDERR_TAIL_BYTES]
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return bytes(report), bytes(tail), True, False
    return bytes(report), bytes(tail), False, False


def _kill(proc: subprocess.Popen, info_r: int | None) -> None:
    """End the sandbox and return once its processes are gone.

    Killing the sandbox's init (pid 1 of its PID namespace, `child-pid` on bwrap's info fd) makes the
    kernel kill every process in the namespace; bwrap's outer process exits only once that init is
    reaped, which is after all of them. A process-group kill of bwrap is the fallback."""
    child = None
    if info_r is not None:
        try:
            os.set_blocking(info_r, False)
            child = json.loads(os.read(info_r, 1 << 16) or b"{}").get("child-pid")
        except (OSError, ValueError):
            child = None
    if isinstance(child, int):
        try:
            pidfd = os.pidfd_open(child)
        except OSError:
            pidfd = None
        if pidfd is not None:
            try:
                with open(f"/proc/{child}/stat") as fh:
                    parent = int(fh.read().rsplit(")", 1)[1].split()[1])
                if parent == proc.pid:  # that pid is still bwrap's child, not a reused one
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass
            finally:
                os.close(pidfd)
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
