"""How this node bounds a sandbox, found out once per process by trial runs.

Each bound is tried with a small run under it before it is relied on: the writes (bwrap `--size`),
then the processes, by the mechanisms asked for in order (a pids cgroup, or RLIMIT_NPROC inside
the sandbox's own user namespace, as uid `NOBODY` for a caller running as root). The first that
holds goes into the `SandboxPlan`; a bound none could enforce is listed in its `why`, and the
sandbox runs without it (the filter's summary warns).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from dataclasses import replace
from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.verify.sandbox_bwrap import SandboxPlan, bwrap_refuses
from nemo_taskseed.filter.verify.sandbox_cgroup import cgroup_parent
from nemo_taskseed.filter.verify.sandbox_harness import decode_value
from nemo_taskseed.filter.verify.sandbox_runner import run_harness
from nemo_taskseed.filter.verify.sandbox_settings import MIB, Limits

# The uid a caller running as root hands the sandbox to when no pids cgroup can be made:
# RLIMIT_NPROC does not bind root (the kernel exempts it).
NOBODY = 65534


_plans: dict[tuple, SandboxPlan] = {}
_plans_lock = threading.Lock()


def plan_for(exe: str, python: str, mechanisms: tuple[str, ...]) -> SandboxPlan:
    """The plan for this bwrap and interpreter, trying the process bounds `mechanisms` in order;
    made on the first call, the same one after."""
    key = (exe, python, mechanisms)
    with _plans_lock:
        if key not in _plans:
            _plans[key] = make_plan(exe, python, mechanisms)
        return _plans[key]


def _kernel_at_least(major: int, minor: int) -> bool:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (major, minor)


_NPROC_PROBE = (
    "import os, time\n"
    "def started():\n"
    "    n = 0\n"
    "    try:\n"
    "        for _ in range(64):\n"
    "            if os.fork() == 0:\n"
    "                time.sleep(60)\n"
    "                os._exit(0)\n"
    "            n += 1\n"
    "    except OSError:\n"
    "        pass\n"
    "    return n\n"
)


def make_plan(exe: str, python: str, mechanisms: tuple[str, ...]) -> SandboxPlan:
    no_size = bwrap_refuses(exe, "--size", str(MIB), "--tmpfs", "/tmp")
    no_disable = bwrap_refuses(exe, "--unshare-user", "--disable-userns")
    base = SandboxPlan(exe, size=no_size is None, disable_userns=no_disable is None)
    why: list[tuple[str, str]] = []
    if no_size is not None:
        why.append(("writes", f"{exe} cannot size a tmpfs ({no_size})"))
    tried: list[str] = []
    for mechanism in mechanisms:
        if mechanism == "cgroup":
            parent, reason = cgroup_parent()
            if parent is None:
                tried.append(reason)
                continue
            plan = replace(base, cgroup=parent, why=tuple(why))
            problem = _trial(plan, python, "", ["1 + 1"], 2)
            if problem is None:
                return plan
            tried.append(f"a pids cgroup under {parent[1]} did not hold the sandbox ({problem})")
        elif mechanism == "nproc":
            if not _kernel_at_least(5, 14):
                tried.append(
                    f"Linux {os.uname().release} counts RLIMIT_NPROC per uid, not per user namespace (5.14 does)"
                )
                continue
            plan = replace(base, uid=NOBODY if os.geteuid() == 0 else None, nproc=True, why=tuple(why))
            # Forks at a bound of 8 tasks: some must start (the count is the sandbox's own, not the
            # uid's) and no more than the bound (it holds).
            problem = _trial(plan, python, _NPROC_PROBE, ["started()"], range(1, 9), max_processes=8)
            if problem is None:
                return plan
            who = f" as uid {plan.uid} (a caller running as root hands the sandbox to it)" if plan.uid else ""
            tried.append(f"RLIMIT_NPROC in the sandbox's user namespace{who} did not work ({problem})")
        else:
            raise ValueError(f"unknown process bound {mechanism!r}")
    why.insert(0, ("processes", "; ".join(tried) or "no mechanism tried"))
    plan = replace(base, why=tuple(why))
    problem = _trial(plan, python, "", ["1 + 1"], 2)
    if problem is not None:
        raise UserError(f"code verification cannot start its bubblewrap sandbox here: {problem}")
    return plan


def _trial(
    plan: SandboxPlan, python: str, code: str, exprs: list[str], expected: Any, max_processes: int = 16
) -> str | None:
    """None when a small run under `plan` reports `expected` (a value or a range of them), else why not."""
    try:
        raw = run_harness(plan, python, code, exprs, Limits(20.0, 256, max_processes, 1))
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    for line in raw.report.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "v" in entry:
            value = decode_value(entry["v"])
            if value == expected or (isinstance(expected, range) and value in expected):
                return None
            return f"the probe reported {value!r}"
    return raw.stderr_tail.strip()[-300:] or f"exit status {raw.returncode}"
