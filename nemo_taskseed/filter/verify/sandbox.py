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
"""

from __future__ import annotations

import ast
import functools
import itertools
import json
import math
import operator
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from nemo_taskseed.config import section_settings
from nemo_taskseed.errors import UserError

# The value encoding both sides share: type-tagged JSON, so a list is not equal to a tuple, 1.5
# survives exactly, and sets compare whatever their order.
_ENCODER = r"""
import json
def _encode(v, depth=0):
    if depth > 50:
        raise TypeError("value nested too deeply")
    if v is None or isinstance(v, bool):
        return ["const", v]
    if isinstance(v, int):
        return ["int", str(v)]
    if isinstance(v, float):
        return ["float", repr(v)]
    if isinstance(v, complex):
        return ["complex", [repr(v.real), repr(v.imag)]]
    if isinstance(v, str):
        return ["str", v]
    if isinstance(v, bytes):
        return ["bytes", v.hex()]
    if isinstance(v, tuple):
        return ["tuple", [_encode(x, depth + 1) for x in v]]
    if isinstance(v, list):
        return ["list", [_encode(x, depth + 1) for x in v]]
    if isinstance(v, (set, frozenset)):
        items = sorted((_encode(x, depth + 1) for x in v), key=lambda e: json.dumps(e, sort_keys=True))
        return ["frozenset" if isinstance(v, frozenset) else "set", items]
    if isinstance(v, dict):
        items = [[_encode(k, depth + 1), _encode(x, depth + 1)] for k, x in v.items()]
        return ["dict", items]
    raise TypeError(f"cannot report a value of type {type(v).__name__}")
"""

# Runs inside the sandbox: the solution, then each test's expression; one JSON line per value on
# the reporting descriptor. The solution's own prints go to stderr.
_HARNESS = (
    _ENCODER
    + r"""
import os, sys
if int(sys.argv[2]):
    # The process bound where no pids cgroup could be made: set here, inside the sandbox's own user
    # namespace, RLIMIT_NPROC counts this sandbox's tasks only (Linux >= 5.14 counts it per user
    # namespace), not every process of the uid. Lowered before any model-written code runs; the
    # code cannot raise it again (that needs CAP_SYS_RESOURCE on the host).
    import resource
    resource.setrlimit(resource.RLIMIT_NPROC, (int(sys.argv[2]), int(sys.argv[2])))
report = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
with open(sys.argv[1]) as fh:
    payload = json.load(fh)
os.remove(sys.argv[1])
ns = {"__name__": "__main__"}
exec(compile(payload["code"], "<solution>", "exec"), ns)
for i, expr in enumerate(payload["exprs"]):
    try:
        value = eval(compile(expr, f"<test {i}>", "eval"), ns)
        line = {"i": i, "v": _encode(value)}
    except BaseException as exc:
        line = {"i": i, "error": f"{type(exc).__name__}: {exc}"[:300]}
    report.write(json.dumps(line) + "\n")
    report.flush()
"""
)

_namespace: dict[str, Any] = {}
exec(_ENCODER, _namespace)  # the same encoder on this side
_encode = _namespace["_encode"]


def _decode(e: Any) -> Any:
    kind, v = e
    if kind == "const":
        return v
    if kind == "int":
        return int(v)
    if kind == "float":
        return float(v)
    if kind == "complex":
        return complex(float(v[0]), float(v[1]))
    if kind == "str":
        return v
    if kind == "bytes":
        return bytes.fromhex(v)
    if kind == "tuple":
        return tuple(_decode(x) for x in v)
    if kind == "list":
        return [_decode(x) for x in v]
    if kind in ("set", "frozenset"):
        items = {_freeze(_decode(x)) for x in v}
        return frozenset(items) if kind == "frozenset" else set(items)
    if kind == "dict":
        return {_freeze(_decode(k)): _decode(x) for k, x in v}
    raise ValueError(f"unknown value kind {kind!r}")


def _freeze(v: Any) -> Any:
    return frozenset(v) if isinstance(v, set) else v


# ---- the trusted side of a test -----------------------------------------------------------------

_CONSTRUCTORS = {
    "set": set,
    "frozenset": frozenset,
    "tuple": tuple,
    "list": list,
    "dict": dict,
    "float": float,
    "int": int,
    "str": str,
    "complex": complex,
    "sorted": sorted,
    "abs": abs,
    "round": round,
}
_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


class _Untrusted(Exception):
    pass


def trusted_value(node: ast.AST) -> Any:
    """Evaluate an expected value here, from literals and a few builtin constructors only: the
    item's tests are model-written, so nothing else of them runs outside the sandbox."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(trusted_value(e) for e in node.elts)
    if isinstance(node, ast.List):
        return [trusted_value(e) for e in node.elts]
    if isinstance(node, ast.Set):
        return {_freeze(trusted_value(e)) for e in node.elts}
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _Untrusted("dict unpacking")
        return {_freeze(trusted_value(k)): trusted_value(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
        value = trusted_value(node.operand)
        return -value if isinstance(node.op, ast.USub) else (+value if isinstance(node.op, ast.UAdd) else not value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = trusted_value(node.left), trusted_value(node.right)
        if isinstance(node.op, ast.Pow) and (not isinstance(right, (int, float)) or abs(right) > 64):
            raise _Untrusted("large power")
        if (
            isinstance(node.op, ast.Mult)
            and any(isinstance(x, (str, bytes, list, tuple)) for x in (left, right))
            and max(abs(x) for x in (left, right) if isinstance(x, int)) > 10_000
        ):
            raise _Untrusted("large repetition")
        return _BINOPS[type(node.op)](left, right)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _CONSTRUCTORS
        and not node.keywords
    ):
        return _CONSTRUCTORS[node.func.id](*[trusted_value(a) for a in node.args])
    raise _Untrusted(type(node).__name__)


@dataclass(frozen=True)
class Check:
    """One test, split: `expr` runs in the sandbox, `compare(value)` here."""

    expr: str
    op: str
    expected: Any = None
    tolerance: dict | None = None

    def holds(self, value: Any) -> bool:
        if self.op == "truthy":
            return bool(value) is self.expected
        if self.op == "isclose":
            return isinstance(value, (int, float)) and math.isclose(value, self.expected, **(self.tolerance or {}))
        return bool(_COMPARE_BY_NAME[self.op](value, self.expected))


_COMPARE_BY_NAME = {op.__name__: fn for op, fn in _COMPARE.items()}


def split_test(test: str) -> Check:
    """`assert <expr> <op> <expected>` -> Check; raises ValueError for a shape that cannot be judged
    from outside."""
    try:
        tree = ast.parse(test.strip())
    except SyntaxError as exc:
        raise ValueError(f"not Python: {exc.msg}") from exc
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        raise ValueError("not a single assert statement")
    node = tree.body[0].test
    try:
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            return Check(ast.unparse(node.left), type(node.ops[0]).__name__, trusted_value(node.comparators[0]))
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("math.isclose", "isclose") and len(node.args) == 2:
            tolerance = {k.arg: trusted_value(k.value) for k in node.keywords if k.arg in ("rel_tol", "abs_tol")}
            if len(tolerance) != len(node.keywords):
                raise _Untrusted("isclose keywords")
            return Check(ast.unparse(node.args[0]), "isclose", trusted_value(node.args[1]), tolerance)
    except _Untrusted as exc:
        raise ValueError(f"its expected value is not a literal ({exc})") from None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return Check(ast.unparse(node.operand), "truthy", False)
    return Check(ast.unparse(node), "truthy", True)


# ---- running ---------------------------------------------------------------------------------

_MIB = 1 << 20
# The report channel (one JSON line per test) is held in this process's memory: past this size
# the run is stopped as an error, so a program writing to it without end cannot fill the host.
REPORT_CAP_BYTES = 16 * _MIB
# Of the program's own output (stderr, where its prints go) only the end is kept, however much it writes.
_STDERR_TAIL_BYTES = 4096
# The uid a caller running as root hands the sandbox to when no pids cgroup can be made:
# RLIMIT_NPROC does not bind root (the kernel exempts it).
NOBODY = 65534
# Mechanisms for the bound on processes, tried in this order (tests narrow it to one of them).
PROCESS_BOUNDS: tuple[str, ...] = ("cgroup", "nproc")
# Each check's own cgroup is named after this prefix, the caller's pid and a counter.
_CGROUP_PREFIX = "taskseed-sandbox-"
_counter = itertools.count()


@dataclass(frozen=True)
class Limits:
    """The bounds of one check: the same for the local sandbox and the HTTP service.

    max_processes counts every task of the sandbox (processes and threads, bwrap's own included);
    write_mb is the size of each writable path (/tmp, /dev/shm, the working folder /sandbox)."""

    timeout_s: float
    memory_mb: int
    max_processes: int
    write_mb: int

    def problems(self) -> list[str]:
        out = []
        if not self.timeout_s > 0:
            out.append(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.memory_mb < 1:
            out.append(f"memory_mb must be >= 1, got {self.memory_mb}")
        # bwrap, its init process in the sandbox and the interpreter are three tasks already.
        if self.max_processes < 4:
            out.append(f"max_processes must be >= 4 (bwrap and the interpreter are 3), got {self.max_processes}")
        if self.write_mb < 1:
            out.append(f"write_mb must be >= 1, got {self.write_mb}")
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Limits:
        return cls(float(d["timeout_s"]), int(d["memory_mb"]), int(d["max_processes"]), int(d["write_mb"]))


@dataclass(frozen=True)
class SandboxResult:
    status: str  # passed | failed | error | timeout | unverifiable_test
    returncode: int | None
    seconds: float
    failed_test: int | None = None
    stderr_tail: str = ""
    sandbox: str = "bwrap"
    # Bounds this run could not enforce ("processes", "writes"); empty where all held.
    unbounded: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


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


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=4)
def _bwrap_works(exe: str) -> str | None:
    """None when bwrap can make its namespaces here, else why not (e.g. user namespaces off)."""
    try:
        proc = subprocess.run([exe, "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if proc.returncode == 0 else proc.stderr.decode("utf-8", "replace").strip()[-300:]


@functools.lru_cache(maxsize=16)
def _bwrap_refuses(exe: str, *options: str) -> str | None:
    """None when bwrap runs with `options` here, else why not: `--size` came with bubblewrap 0.7 and
    a setuid bwrap refuses it; `--disable-userns` came with 0.8."""
    try:
        proc = subprocess.run(
            [exe, "--unshare-all", "--ro-bind", "/", "/", *options, "true"], capture_output=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if proc.returncode == 0 else proc.stderr.decode("utf-8", "replace").strip()[-300:]


# ---- the bound on processes: a pids cgroup, or RLIMIT_NPROC in the sandbox's user namespace ------


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


def _cgroup_parent() -> tuple[tuple[str, str] | None, str]:
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
        _remove_stale_cgroups(folder)
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


def _remove_stale_cgroups(folder: str) -> None:
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


class _Cgroup:
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


def _kernel_at_least(major: int, minor: int) -> bool:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (major, minor)


# ---- the plan: how this node bounds a sandbox, found out once per process ------------------------


@dataclass(frozen=True)
class _Plan:
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


_plans: dict[tuple, _Plan] = {}
_plans_lock = threading.Lock()


def _plan(exe: str, python: str) -> _Plan:
    key = (exe, python, PROCESS_BOUNDS)
    with _plans_lock:
        if key not in _plans:
            _plans[key] = _make_plan(exe, python)
        return _plans[key]


def sandbox_plan(python: str | None = None) -> dict[str, Any]:
    """Which mechanism bounds what on this node (docs/filter.md); raises UserError without bwrap."""
    exe = bwrap_path()
    problem = "bwrap not found on PATH" if exe is None else _bwrap_works(exe)
    if problem is not None:
        raise UserError(f"bubblewrap cannot run here ({problem})")
    return _plan(exe, _python(python)).describe()


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


def _make_plan(exe: str, python: str) -> _Plan:
    no_size = _bwrap_refuses(exe, "--size", str(_MIB), "--tmpfs", "/tmp")
    no_disable = _bwrap_refuses(exe, "--unshare-user", "--disable-userns")
    base = _Plan(exe, size=no_size is None, disable_userns=no_disable is None)
    why: list[tuple[str, str]] = []
    if no_size is not None:
        why.append(("writes", f"{exe} cannot size a tmpfs ({no_size})"))
    tried: list[str] = []
    for mechanism in PROCESS_BOUNDS:
        if mechanism == "cgroup":
            parent, reason = _cgroup_parent()
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


def _trial(plan: _Plan, python: str, code: str, exprs: list[str], expected: Any, max_processes: int = 16) -> str | None:
    """None when a small run under `plan` reports `expected` (a value or a range of them), else why not."""
    try:
        raw = _run_local(plan, python, code, exprs, Limits(20.0, 256, max_processes, 1))
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    for line in raw.report.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "v" in entry:
            value = _decode(entry["v"])
            if value == expected or (isinstance(expected, range) and value in expected):
                return None
            return f"the probe reported {value!r}"
    return raw.stderr_tail.strip()[-300:] or f"exit status {raw.returncode}"


# ---- one run -------------------------------------------------------------------------------------


def _python(python: str | None) -> str:
    return os.path.realpath(python or getattr(sys, "_base_executable", None) or sys.executable)


def _sandbox_command(plan: _Plan, python: str, limits: Limits, fds: dict[str, int]) -> list[str]:
    # The interpreter's own installation (its stdlib) only: not the venv, not the project.
    roots = {str(Path(python).parent.parent)}
    if python == _python(None):
        roots.add(os.path.realpath(sys.base_prefix))
    size = ["--size", str(limits.write_mb * _MIB)] if plan.size else []
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


_PR_SET_PDEATHSIG = 1


@functools.lru_cache(maxsize=1)
def _prctl():
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl  # loaded here, not between fork and exec


def _preexec(limits: Limits, cgroup_procs: str | None, uid: int | None):
    cpu_seconds = max(1, int(limits.timeout_s) + 1)
    mem = limits.memory_mb * _MIB
    prctl, parent = _prctl(), os.getpid()

    def apply() -> None:
        import resource

        os.setsid()  # own process group: a timeout kills bwrap and, with it, the whole sandbox
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (_MIB, _MIB))
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


def _run_local(plan: _Plan | None, python: str, code: str, exprs: list[str], limits: Limits) -> RawRun:
    """One run of the harness: in bwrap under `plan`, or (plan None: unsafe_no_sandbox) a plain subprocess."""
    payload = json.dumps({"code": code, "exprs": exprs}).encode()
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
    cgroup = None
    fds: dict[str, int] = {}
    tmp = None
    try:
        if plan is None:  # explicitly unsafe: a plain subprocess in a temp folder
            tmp = tempfile.TemporaryDirectory(prefix="taskseed-sandbox-")
            for name, data in (("payload.json", payload), ("harness.py", _HARNESS.encode())):
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
            fds["harness"] = _memfd("harness", _HARNESS.encode())
            info_r, fds["info"] = os.pipe()
            fds["info_r"] = info_r
            if plan.cgroup is not None:
                cgroup = _Cgroup(*plan.cgroup, limits.max_processes)
            cmd = _sandbox_command(plan, python, limits, fds)
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


# ---- the service's side and the client's -------------------------------------------------------


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
    problem = "bwrap not found on PATH" if exe is None else _bwrap_works(exe)
    if problem is not None and not unsafe_no_sandbox:
        raise UserError(
            f"code verification needs bubblewrap and cannot use it here ({problem}): install the "
            "`bubblewrap` package (scripts/setup.sh does), or set filter.verify.enabled=false, or run the "
            "sandbox on another node (filter.verify.code.sandbox=http, docs/filter.md), or accept "
            "running model-written code without isolation with filter.verify.code.unsafe_no_sandbox=true"
        )
    python = _python(python)
    plan = None if problem is not None else _plan(exe, python)
    return _run_local(plan, python, code, exprs, limits)


def _http_opener():
    # The service is on this node or the cluster's network: never through a proxy from the environment.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _service_error(url: str, exc: BaseException) -> UserError:
    return UserError(
        f"the code sandbox service at {url} (filter.verify.code.sandbox_url) cannot be used: {exc}; start it "
        "with `python -m nemo_taskseed.filter.verify.sandbox_server --port N` on a node with bubblewrap, or "
        "set filter.verify.code.sandbox=local"
    )


def execute_http(url: str, code: str, exprs: list[str], limits: Limits) -> RawRun:
    """The same run, by the service at `url` (nemo_taskseed/filter/verify/sandbox_server.py)."""
    body = json.dumps({"code": code, "exprs": exprs, "limits": asdict(limits)}).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/run", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        # The service's own timeout kills the run; this one only covers a service that stopped
        # answering (with room for a turn in its queue: it runs --workers sandboxes at once).
        with _http_opener().open(request, timeout=limits.timeout_s + 300) as response:
            raw = RawRun.from_dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        raise _service_error(url, f"HTTP {exc.code}: {exc.read()[:300].decode('utf-8', 'replace')}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _service_error(url, f"{type(exc).__name__}: {exc}") from None
    return replace(raw, sandbox=f"http:{raw.sandbox}")


def service_health(url: str, timeout: float = 10) -> dict[str, Any]:
    with _http_opener().open(url.rstrip("/") + "/health", timeout=timeout) as response:
        return json.loads(response.read())


# ---- settings, judging, warnings ---------------------------------------------------------------


@dataclass(frozen=True)
class CodeSettings:
    """`filter.verify.code` (configs/base/filter.yaml): limits of one check, where the sandbox runs
    (this node, or an HTTP service), and the opt-out of the sandbox (a plain subprocess, no isolation)."""

    timeout_s: float
    memory_mb: int
    max_processes: int
    write_mb: int
    sandbox: str
    sandbox_url: str | None
    unsafe_no_sandbox: bool

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> CodeSettings:
        values = {**section_settings(cls, cfg, "filter.verify.code"), **overrides}
        out = cls(
            float(values["timeout_s"]),
            int(values["memory_mb"]),
            int(values["max_processes"]),
            int(values["write_mb"]),
            str(values["sandbox"]),
            str(values["sandbox_url"]) if values["sandbox_url"] else None,
            bool(values["unsafe_no_sandbox"]),
        )
        problems = out.limits.problems()
        if problems:
            raise UserError("filter.verify.code: " + "; ".join(problems))
        if out.sandbox not in ("local", "http"):
            raise UserError(f"filter.verify.code.sandbox must be local or http, got {out.sandbox!r}")
        if out.sandbox == "http" and not (out.sandbox_url or "").startswith(("http://", "https://")):
            raise UserError(
                "filter.verify.code.sandbox=http needs filter.verify.code.sandbox_url=http://HOST:PORT "
                f"(the service's address), got {out.sandbox_url!r}"
            )
        return out

    @property
    def limits(self) -> Limits:
        return Limits(self.timeout_s, self.memory_mb, self.max_processes, self.write_mb)


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


def judge(checks: list[Check], raw: RawRun, limits: Limits) -> SandboxResult:
    """The verdict, here: each reported value against its test's expected value."""
    tail, seconds = raw.stderr_tail, raw.seconds
    extra = {"sandbox": raw.sandbox, "unbounded": raw.unbounded}
    if raw.timed_out:
        return SandboxResult("timeout", None, seconds, stderr_tail=f"killed after {limits.timeout_s}s", **extra)
    if raw.overflow:
        return SandboxResult(
            "error",
            raw.returncode,
            seconds,
            stderr_tail=(tail + f"\nstopped: over {REPORT_CAP_BYTES // _MIB} MiB on the report channel")[-500:],
            **extra,
        )
    values: dict[int, dict] = {}
    for line in raw.report.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("i"), int):
            values.setdefault(entry["i"], entry)  # the first report per test counts
    if raw.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return SandboxResult("timeout", raw.returncode, seconds, stderr_tail=tail, **extra)
    for i, check in enumerate(checks):
        entry = values.get(i)
        if entry is None:
            return SandboxResult(
                "error",
                raw.returncode,
                seconds,
                i,
                (tail + f"\nexited before test {i} reported a value")[-500:],
                **extra,
            )
        if "error" in entry:
            return SandboxResult(
                "failed", raw.returncode, seconds, i, (tail + "\n" + str(entry["error"]))[-500:], **extra
            )
        try:
            holds = check.holds(_decode(entry["v"]))
        except (TypeError, ValueError, KeyError) as exc:
            holds, tail = False, (tail + f"\nunreadable value for test {i}: {exc}")[-500:]
        if not holds:
            return SandboxResult("failed", raw.returncode, seconds, i, tail, **extra)
    return SandboxResult("passed", raw.returncode, seconds, **extra)


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
        problem = "bwrap not found on PATH" if exe is None else _bwrap_works(exe)
        if problem is not None:
            if not settings.unsafe_no_sandbox:
                return []  # code items, if any, stopped the run with an error
            return [
                f"code items ran without a sandbox (filter.verify.code.unsafe_no_sandbox=true; {problem}): "
                "model-written programs could read and write the host's files, reach the network and leave "
                "processes behind, and nothing bounded their processes or writes"
            ]
        try:
            unbounded = dict(_plan(exe, _python(python)).why)
        except UserError as exc:
            return [f"{where} cannot start: {exc}"]
    return [f"{where} " + _UNBOUNDED_MEANS[name].format(why=why) for name, why in unbounded.items()]
