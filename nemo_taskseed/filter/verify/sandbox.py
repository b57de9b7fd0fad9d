"""Run a generated solution against its generated tests, isolated by bubblewrap, judged from outside.

Isolation is bubblewrap's (`bwrap`, Debian's `bubblewrap`; scripts/setup.sh installs it), not
guards of our own inside the interpreter: the code runs with

  * a read-only view of the Python installation and the system libraries only (no home, no
    /work, no /tmp of the host: host files are neither readable nor writable, host UNIX sockets
    are not there); bwrap's own root and /dev are read-only too;
  * new user, PID, network, IPC and UTS namespaces (`--unshare-all`, no nested user namespace):
    no network at all, not even loopback to the host's services, whatever socket API the code
    uses; when the checked process ends, the PID namespace ends and every process it started dies
    with it (a double fork or a `setsid` child cannot outlive the check or stretch its timeout);
    `--die-with-parent`;
  * rlimits on CPU seconds, address space, file size and core dumps, and a wall-clock timeout
    that kills the whole sandbox;
  * a bound on the tasks (processes and threads) of the whole sandbox, `max_processes`: its own
    pids cgroup where one can be made, else RLIMIT_NPROC set inside its own user namespace (which
    Linux >= 5.14 counts per namespace; a caller running as root first hands the sandbox to uid
    65534, as root is exempt); where neither works the run goes on, its result lists
    `unbounded: ["processes"]` and the filter's summary warns (`sandbox_warnings`);
  * every writable path a tmpfs of `write_mb` (`--size`): /tmp, /dev/shm and the working folder
    /sandbox, into which the program and the harness are copied (nothing of the host is bound
    writable); the report channel is read up to REPORT_CAP_BYTES, and of stderr only the end.

The same harness and limits run behind a small HTTP service (sandbox_server.py) for nodes where
bwrap cannot make its namespaces (`filter.verify.code.sandbox=http`).

The verdict does not come from inside. Each test `assert <expr> <op> <expected>` is split: the
sandbox is given only `<expr>` (e.g. `f(1)`), evaluates it and reports the value; this process
evaluates `<expected>` itself (literals and a few constructors such as `set(...)`, never code
from the item), and compares. The code under test never sees the expected values, so it cannot
print a pass: it would have to compute the answers, which is what is being checked. `assert X`
and `assert not X` compare `bool(X)` with True/False; `assert math.isclose(<expr>, <expected>)`
is compared with math.isclose here. A test of any other shape cannot be judged from outside and
fails the item as `unverifiable_test` (all 600 tests of the MBPP training rows in the fixtures
have the `<call> == <literal>` shape).

Without bwrap, code verification refuses to run (a clear error), unless
`filter.verify.code.unsafe_no_sandbox=true` asks for the old, weaker subprocess.

Where each part lives (all in nemo_taskseed/filter/verify/):

  sandbox.py             this entry point: `run_code_tests`, `execute` (what the service runs), the
                         node's plan (`sandbox_plan`) and the summary's `sandbox_warnings`;
  sandbox_settings.py    `CodeSettings` (filter.verify.code) and the `Limits` of one check;
  sandbox_checks.py      each test split into what the sandbox evaluates and what is compared
                         here, and the verdict (`judge`);
  sandbox_harness.py     the program run inside the sandbox, and the value encoding both sides share;
  sandbox_bwrap.py       bubblewrap itself: where it is, whether it works, its options, the command
                         line of one sandbox;
  sandbox_mechanisms.py  which bounds hold on this node, found once by trial runs (the plan);
  sandbox_cgroup.py      the pids cgroup of one check;
  sandbox_runner.py      one run of the harness as a child process (`RawRun`);
  sandbox_client.py      the client of the HTTP service (sandbox_server.py).
"""

from __future__ import annotations

from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.verify.sandbox_bwrap import SandboxPlan, bwrap_path, bwrap_works, interpreter_path
from nemo_taskseed.filter.verify.sandbox_cgroup import remove_stale_cgroups
from nemo_taskseed.filter.verify.sandbox_checks import Check, SandboxResult, judge, split_test, trusted_value
from nemo_taskseed.filter.verify.sandbox_client import execute_http, service_health
from nemo_taskseed.filter.verify.sandbox_mechanisms import NOBODY, plan_for
from nemo_taskseed.filter.verify.sandbox_runner import REPORT_CAP_BYTES, RawRun, run_harness
from nemo_taskseed.filter.verify.sandbox_settings import CodeSettings, Limits

__all__ = [
    "NOBODY",
    "PROCESS_BOUNDS",
    "REPORT_CAP_BYTES",
    "Check",
    "CodeSettings",
    "Limits",
    "RawRun",
    "SandboxResult",
    "bwrap_path",
    "execute",
    "execute_http",
    "judge",
    "run_code_tests",
    "sandbox_plan",
    "sandbox_warnings",
    "service_health",
    "split_test",
    "trusted_value",
]

# Mechanisms for the bound on processes, tried in this order (tests narrow it to one of them).
PROCESS_BOUNDS: tuple[str, ...] = ("cgroup", "nproc")

# The names these helpers had when they lived here, which tests still use (test_sandbox_bounds.py).
_python = interpreter_path
_remove_stale_cgroups = remove_stale_cgroups


def _plan(exe: str, python: str) -> SandboxPlan:
    """This node's plan, trying the process bounds in `PROCESS_BOUNDS` as it is at the call (a
    test narrows it)."""
    return plan_for(exe, python, PROCESS_BOUNDS)


def sandbox_plan(python: str | None = None) -> dict[str, Any]:
    """Which mechanism bounds what on this node (docs/filter.md); raises UserError without bwrap."""
    exe = bwrap_path()
    problem = "bwrap not found on PATH" if exe is None else bwrap_works(exe)
    if problem is not None:
        raise UserError(f"bubblewrap cannot run here ({problem})")
    return _plan(exe, interpreter_path(python)).describe()


def execute(
    code: str,
    exprs: list[str],
    limits: Limits,
    *,
    python: str | None = None,
    unsafe_no_sandbox: bool = False,
) -> RawRun:
    """Run `code`, then evaluate each of `exprs`, in the local sandbox; what the HTTP service runs."""
    exe = bwrap_path()
    problem = "bwrap not found on PATH" if exe is None else bwrap_works(exe)
    if problem is not None and not unsafe_no_sandbox:
        raise UserError(
            f"code verification needs bubblewrap and cannot use it here ({problem}): install the "
            "`bubblewrap` package (scripts/setup.sh does), or set filter.verify.enabled=false, or run the "
            "sandbox on another node (filter.verify.code.sandbox=http, docs/filter.md), or accept "
            "running model-written code without isolation with filter.verify.code.unsafe_no_sandbox=true"
        )
    python = interpreter_path(python)
    plan = None if problem is not None else _plan(exe, python)
    return run_harness(plan, python, code, exprs, limits)


def run_code_tests(
    code: str,
    tests: list[str],
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    max_processes: int = 64,
    write_mb: int = 64,
    setup_code: str = "",
    python: str | None = None,
    unsafe_no_sandbox: bool = False,
    sandbox: str = "local",
    sandbox_url: str | None = None,
    settings: CodeSettings | None = None,
) -> SandboxResult:
    """Run `setup_code + code` in the sandbox, evaluate each test's expression there and judge it
    here; passed only when every test holds. `settings` (filter.verify.code), when given, replaces
    the limit and sandbox arguments."""
    if settings is not None:
        limits, unsafe_no_sandbox = settings.limits, settings.unsafe_no_sandbox
        sandbox, sandbox_url = settings.sandbox, settings.sandbox_url
    else:
        limits = Limits(timeout_s, memory_mb, max_processes, write_mb)
    if not tests:
        return SandboxResult("error", None, 0.0, stderr_tail="no tests to run")
    checks: list[Check] = []
    for i, test in enumerate(tests):
        try:
            checks.append(split_test(test))
        except ValueError as exc:
            return SandboxResult(
                "unverifiable_test", None, 0.0, i, f"test {i} cannot be judged outside the sandbox: {exc}"
            )
    full_code = (setup_code + "\n" + code) if setup_code else code
    exprs = [c.expr for c in checks]
    if sandbox == "http":
        raw = execute_http(sandbox_url or "", full_code, exprs, limits)
    else:
        raw = execute(full_code, exprs, limits, python=python, unsafe_no_sandbox=unsafe_no_sandbox)
    return judge(checks, raw, limits)


_UNBOUNDED_MEANS = {
    "processes": (
        "cannot bound the number of processes (filter.verify.code.max_processes) ({why}): a generated program "
        "could fork until the node's pid limit while it ran, and a code verdict on a starved node may not be "
        "the program's"
    ),
    "writes": (
        "cannot bound what programs write (filter.verify.code.write_mb) ({why}): /tmp, /dev/shm and the working "
        "folder were RAM without a size limit while a program ran"
    ),
}


def sandbox_warnings(settings: CodeSettings, python: str | None = None) -> list[str]:
    """For the run's summary: each bound the code sandbox cannot enforce where it runs (this node,
    or the HTTP service), and a run without any sandbox. Empty where everything holds."""
    if settings.sandbox == "http":
        where = f"the code sandbox service at {settings.sandbox_url}"
        try:
            unbounded = dict(service_health(settings.sandbox_url or "").get("unbounded") or {})
        except (OSError, ValueError) as exc:
            return [f"{where} (filter.verify.code.sandbox_url) did not say which bounds it enforces ({exc})"]
    else:
        where = "the code sandbox on this node"
        exe = bwrap_path()
        problem = "bwrap not found on PATH" if exe is None else bwrap_works(exe)
        if problem is not None:
            if not settings.unsafe_no_sandbox:
                return []  # code items, if any, stopped the run with an error
            return [
                f"code items ran without a sandbox (filter.verify.code.unsafe_no_sandbox=true; {problem}): "
                "model-written programs could read and write the host's files, reach the network and leave "
                "processes behind, and nothing bounded their processes or writes"
            ]
        try:
            unbounded = dict(_plan(exe, interpreter_path(python)).why)
        except UserError as exc:
            return [f"{where} cannot start: {exc}"]
    return [f"{where} " + _UNBOUNDED_MEANS[name].format(why=why) for name, why in unbounded.items()]
