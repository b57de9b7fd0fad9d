"""Run a generated solution against its generated tests, isolated by bubblewrap, judged from outside.

Isolation is bubblewrap's (`bwrap`, Debian's `bubblewrap`; scripts/setup.sh installs it), not
guards of our own inside the interpreter: the code runs with

  * a read-only view of the Python installation and the system libraries only (no home, no
    /work, no /tmp of the host: host files are neither readable nor writable, host UNIX sockets
    are not there), a private empty /tmp, and an empty working folder;
  * new user, PID, network, IPC and UTS namespaces (`--unshare-all`): no network at all, not even
    loopback to the host's services, whatever socket API the code uses; when the checked process
    ends, the PID namespace ends and every process it started dies with it (a double fork or a
    `setsid` child cannot outlive the check or stretch its timeout); `--die-with-parent`;
  * rlimits on CPU seconds, address space, file size and core dumps, and a wall-clock timeout
    that kills the whole sandbox.

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
import json
import math
import operator
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
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


@dataclass(frozen=True)
class SandboxResult:
    status: str  # passed | failed | error | timeout | unverifiable_test
    returncode: int | None
    seconds: float
    failed_test: int | None = None
    stderr_tail: str = ""
    sandbox: str = "bwrap"

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


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


def _sandbox_command(exe: str, python: str, workdir: str) -> list[str]:
    real = os.path.realpath(python)
    # The interpreter's own installation (its stdlib) only: not the venv, not the project.
    roots = {os.path.realpath(p) for p in (sys.base_prefix, str(Path(real).parent.parent))}
    cmd = [
        exe,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
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
        "--tmpfs",
        "/tmp",
    ]
    for system in ("/usr", "/lib", "/lib64", "/bin", "/etc/alternatives"):
        cmd += ["--ro-bind-try", system, system]
    for root in sorted(roots):
        if not any(root.startswith(s + "/") for s in ("/usr", "/lib", "/lib64", "/bin")):
            cmd += ["--ro-bind", root, root]
    cmd += [
        "--bind",
        workdir,
        "/sandbox",
        "--chdir",
        "/sandbox",
        real,
        "-I",
        "-B",
        "/sandbox/harness.py",
        "/sandbox/payload.json",
    ]
    return cmd


def _limits(cpu_seconds: int, memory_mb: int):
    def apply() -> None:
        import resource

        os.setsid()  # own process group: a timeout kills bwrap and, with it, the whole sandbox
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        mem = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


@dataclass(frozen=True)
class CodeSettings:
    """`filter.verify.code` (configs/base/filter.yaml): limits of one check, and the opt-out of
    the sandbox (a plain subprocess, no isolation)."""

    timeout_s: float
    memory_mb: int
    unsafe_no_sandbox: bool

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> CodeSettings:
        values = {**section_settings(cls, cfg, "filter.verify.code"), **overrides}
        out = cls(float(values["timeout_s"]), int(values["memory_mb"]), bool(values["unsafe_no_sandbox"]))
        if out.timeout_s <= 0 or out.memory_mb < 1:
            raise UserError(
                f"filter.verify.code: timeout_s must be > 0 and memory_mb >= 1, got {out.timeout_s}, {out.memory_mb}"
            )
        return out


def run_code_tests(
    code: str,
    tests: list[str],
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    setup_code: str = "",
    python: str | None = None,
    unsafe_no_sandbox: bool = False,
) -> SandboxResult:
    """Run `setup_code + code` in the sandbox, evaluate each test's expression there and judge it
    here; passed only when every test holds."""
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
    exe = bwrap_path()
    problem = "bwrap not found on PATH" if exe is None else _bwrap_works(exe)
    if problem is not None and not unsafe_no_sandbox:
        raise UserError(
            f"code verification needs bubblewrap and cannot use it here ({problem}): install the "
            "`bubblewrap` package (scripts/setup.sh does), or set filter.verify.enabled=false, or accept "
            "running model-written code without isolation with filter.verify.code.unsafe_no_sandbox=true"
        )
    python = python or getattr(sys, "_base_executable", None) or sys.executable
    with tempfile.TemporaryDirectory(prefix="taskseed-sandbox-") as tmp:
        with open(os.path.join(tmp, "payload.json"), "w", encoding="utf-8") as fh:
            json.dump(
                {"code": (setup_code + "\n" + code) if setup_code else code, "exprs": [c.expr for c in checks]}, fh
            )
        with open(os.path.join(tmp, "harness.py"), "w", encoding="utf-8") as fh:
            fh.write(_HARNESS)
        if problem is None:
            cmd, label = _sandbox_command(exe, python, tmp), "bwrap"
        else:  # explicitly unsafe: a plain subprocess in the temp folder
            cmd, label = (
                [python, "-I", "-B", os.path.join(tmp, "harness.py"), os.path.join(tmp, "payload.json")],
                "none",
            )
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_limits(max(1, int(timeout_s) + 1), memory_mb),
        )
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            return SandboxResult(
                "timeout",
                None,
                round(time.monotonic() - start, 3),
                stderr_tail=f"killed after {timeout_s}s",
                sandbox=label,
            )
    seconds = round(time.monotonic() - start, 3)
    tail = err.decode("utf-8", "replace")[-500:]
    values: dict[int, dict] = {}
    for line in out.decode("utf-8", "replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("i"), int):
            values.setdefault(entry["i"], entry)  # the first report per test counts
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return SandboxResult("timeout", proc.returncode, seconds, stderr_tail=tail, sandbox=label)
    for i, check in enumerate(checks):
        entry = values.get(i)
        if entry is None:
            return SandboxResult(
                "error",
                proc.returncode,
                seconds,
                i,
                (tail + f"\nexited before test {i} reported a value")[-500:],
                label,
            )
        if "error" in entry:
            return SandboxResult(
                "failed", proc.returncode, seconds, i, (tail + "\n" + str(entry["error"]))[-500:], label
            )
        try:
            holds = check.holds(_decode(entry["v"]))
        except (TypeError, ValueError, KeyError) as exc:
            holds, tail = False, (tail + f"\nunreadable value for test {i}: {exc}")[-500:]
        if not holds:
            return SandboxResult("failed", proc.returncode, seconds, i, tail, label)
    return SandboxResult("passed", proc.returncode, seconds, sandbox=label)
