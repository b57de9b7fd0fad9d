"""The pids cgroup of one check: the preferred bound on the processes of a sandbox.

`cgroup_parent` finds a cgroup folder under which this process may make children with a pids
limit (cgroup v2 with the controller delegated, or a v1 pids hierarchy), `PidsCgroup` is one
check's own cgroup (the kernel refuses a fork or a thread past pids.max; at the end every task in
it is killed), and `remove_stale_cgroups` clears those a killed caller left behind.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import time

# Each check's own cgroup is named after this prefix, the caller's pid and a counter.
_CGROUP_PREFIX = "taskseed-sandbox-"
_counter = itertools.count()


def _cgroup_candidates() -> list[tuple[str, str]]:
    """(version, folder) of this process's own cgroup in each hierarchy that has the pids controller."""
    with open("/proc/self/cgroup") as fh:
        own = fh.read().splitlines()
    with open("/proc/self/mountinfo") as fh:
        mounts = fh.read().splitlines()
    v2 = v1 = None
    for line in own:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:
            v2 = path
        elif "pids" in controllers.split(","):
            v1 = path
    out = []
    for line in mounts:
        fields = line.split()
        sep = fields.index("-")
        root, point, fstype, options = fields[3], _unescape(fields[4]), fields[sep + 1], fields[sep + 3]
        path = v2 if fstype == "cgroup2" else v1 if fstype == "cgroup" and "pids" in options.split(",") else None
        if path is None:
            continue
        if root != "/" and (path == root or path.startswith(root + "/")):
            path = path[len(root) :]  # a cgroup folder of the host bound into a container
        out.append(("v2" if fstype == "cgroup2" else "v1", os.path.normpath(point + "/" + path)))
    return out


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def cgroup_parent() -> tuple[tuple[str, str] | None, str]:
    """A cgroup folder under which this process can make a child with a pids limit, or why not."""
    try:
        candidates = _cgroup_candidates()
    except (OSError, ValueError) as exc:
        return None, f"cannot read this process's cgroups ({exc})"
    reasons = []
    for version, folder in candidates:
        if version == "v2":
            try:
                with open(os.path.join(folder, "cgroup.subtree_control")) as fh:
                    delegated = "pids" in fh.read().split()
                if not delegated:  # where our cgroup is ours to manage, enable the controller for children
                    with open(os.path.join(folder, "cgroup.subtree_control"), "w") as fh:
                        fh.write("+pids")
            except OSError as exc:
                reasons.append(f"cgroup v2 {folder}: pids not delegated ({exc.strerror or exc})")
                continue
        remove_stale_cgroups(folder)
        probe = os.path.join(folder, f"{_CGROUP_PREFIX}{os.getpid()}-probe")
        try:
            os.mkdir(probe)
            try:
                with open(os.path.join(probe, "pids.max"), "w") as fh:
                    fh.write("8")
            finally:
                os.rmdir(probe)
        except OSError as exc:
            reasons.append(f"cgroup {version} {folder}: {exc.strerror or exc}")
            continue
        return (version, folder), ""
    if not candidates:
        reasons.append("no pids controller is mounted")
    return None, "no pids cgroup can be made here: " + "; ".join(reasons)


def remove_stale_cgroups(folder: str) -> None:
    """Empty cgroups left by a caller that was killed mid-check (kill -9 skips the cleanup)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = re.fullmatch(re.escape(_CGROUP_PREFIX) + r"(\d+)-\d+", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            try:
                os.rmdir(os.path.join(folder, name))
            except OSError:
                pass  # still holds tasks (they are killed by their sandbox's end) or not ours


class PidsCgroup:
    """One check's own pids cgroup: every task of the sandbox is in it, the kernel refuses a fork or
    a thread past pids.max, and at the end every task in it is killed before it is removed."""

    def __init__(self, version: str, parent: str, max_tasks: int) -> None:
        self.version = version
        self.path = os.path.join(parent, f"{_CGROUP_PREFIX}{os.getpid()}-{next(_counter)}")
        os.mkdir(self.path)
        with open(os.path.join(self.path, "pids.max"), "w") as fh:
            fh.write(str(max_tasks))
        self.procs = os.path.join(self.path, "cgroup.procs")

    def _pids(self) -> list[int]:
        try:
            with open(self.procs) as fh:
                return [int(x) for x in fh.read().split()]
        except OSError:
            return []

    def close(self) -> None:
        kill = os.path.join(self.path, "cgroup.kill")  # cgroup v2, Linux >= 5.14: one write kills all
        if self.version == "v2" and os.path.exists(kill):
            try:
                with open(kill, "w") as fh:
                    fh.write("1")
            except OSError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pids = self._pids()
            if not pids:
                try:
                    os.rmdir(self.path)
                    return
                except FileNotFoundError:
                    return
                except OSError:
                    pass  # exiting tasks are still charged for a moment
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
