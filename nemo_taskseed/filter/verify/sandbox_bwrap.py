"""Bubblewrap on this node, and the command line of one sandbox.

Where `bwrap` is, whether it can make its namespaces here, which of its options this version
accepts (`--size`, `--disable-userns`), the `SandboxPlan` that records how a sandbox is made and
bounded on this node (sandbox_mechanisms.py finds it), and `sandbox_command`: the bwrap command
line that gives the harness its read-only system view, its tmpfs writable paths and its namespaces.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemo_taskseed.filter.verify.sandbox_settings import MIB, Limits


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=4)
def bwrap_works(exe: str) -> str | None:
    """None when bwrap can make its namespaces here, else why not (e.g. user namespaces off)."""
    try:
        proc = subprocess.run([exe, "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if proc.returncode == 0 else proc.stderr.decode("utf-8", "replace").strip()[-300:]


@functools.lru_cache(maxsize=16)
def bwrap_refuses(exe: str, *options: str) -> str | None:
    """None when bwrap runs with `options` here, else why not: `--size` came with bubblewrap 0.7 and
    a setuid bwrap refuses it; `--disable-userns` came with 0.8."""
    try:
        proc = subprocess.run(
            [exe, "--unshare-all", "--ro-bind", "/", "/", *options, "true"], capture_output=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if proc.returncode == 0 else proc.stderr.decode("utf-8", "replace").strip()[-300:]


def interpreter_path(python: str | None) -> str:
    return os.path.realpath(python or getattr(sys, "_base_executable", None) or sys.executable)


@dataclass(frozen=True)
class SandboxPlan:
    exe: str
    cgroup: tuple[str, str] | None = None  # (version, parent folder): each check gets a pids cgroup there
    uid: int | None = None  # switch to this uid before bwrap (root, for RLIMIT_NPROC to bind)
    nproc: bool = False  # the harness sets RLIMIT_NPROC inside the sandbox's user namespace
    size: bool = False  # bwrap --size bounds each writable tmpfs
    disable_userns: bool = False  # bwrap --disable-userns: no nested user namespace inside
    why: tuple[tuple[str, str], ...] = ()  # (bound, why it is not enforced here)

    @property
    def unbounded(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.why)

    def describe(self) -> dict[str, Any]:
        if self.cgroup is not None:
            processes = f"pids cgroup ({self.cgroup[0]}, under {self.cgroup[1]})"
        elif self.nproc:
            processes = "RLIMIT_NPROC in the sandbox's own user namespace" + (
                f" (as uid {self.uid})" if self.uid is not None else ""
            )
        else:
            processes = None
        return {
            "processes": processes,
            "writes": "tmpfs with bwrap --size" if self.size else None,
            "unbounded": dict(self.why),
        }


def sandbox_command(plan: SandboxPlan, python: str, limits: Limits, fds: dict[str, int]) -> list[str]:
    # The interpreter's own installation (its stdlib) only: not the venv, not the project.
    roots = {str(Path(python).parent.parent)}
    if python == interpreter_path(None):
        roots.add(os.path.realpath(sys.base_prefix))
    size = ["--size", str(limits.write_mb * MIB)] if plan.size else []
    cmd = [plan.exe, "--unshare-all"]
    if plan.disable_userns:
        # No user namespace of its own inside: nothing to reset a per-namespace count with.
        cmd += ["--unshare-user", "--disable-userns"]
    cmd += [
        "--die-with-parent",
        "--new-session",
        "--info-fd",
        str(fds["info"]),
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "LANG",
        "C.UTF-8",
        "--setenv",
        "PYTHONHASHSEED",
        "0",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        # Every writable path is a tmpfs (RAM) of write_mb: /tmp, /dev/shm and the working folder.
        *size,
        "--tmpfs",
        "/tmp",
        *size,
        "--tmpfs",
        "/dev/shm",
        "--remount-ro",
        "/dev",
    ]
    for system in ("/usr", "/lib", "/lib64", "/bin", "/etc/alternatives"):
        cmd += ["--ro-bind-try", system, system]
    for root in sorted(roots):
        if not any(root.startswith(s + "/") for s in ("/usr", "/lib", "/lib64", "/bin")):
            cmd += ["--ro-bind", root, root]
    cmd += [
        *size,
        "--tmpfs",
        "/sandbox",
        "--file",
        str(fds["payload"]),
        "/sandbox/payload.json",
        "--ro-bind-data",
        str(fds["harness"]),
        "/sandbox/harness.py",
        # bwrap's own root (a tmpfs holding the mount points) is writable until this: read-only.
        "--remount-ro",
        "/",
        "--chdir",
        "/sandbox",
        python,
        "-I",
        "-B",
        "/sandbox/harness.py",
        "/sandbox/payload.json",
        # RLIMIT_NPROC for the harness to set inside: bwrap's outer process is not in the namespace.
        str(limits.max_processes - 1 if plan.nproc else 0),
    ]
    return cmd
