"""The trusted side of a code test: what the sandbox is asked to evaluate, and the verdict.

Each test `assert <expr> <op> <expected>` is split (`split_test`): the sandbox gets only `<expr>`,
while `<expected>` is evaluated here from literals and a few builtin constructors
(`trusted_value`), never by running code of the item. `judge` compares each value the sandbox
reported with its test's expected value and gives the `SandboxResult`.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import signal
from dataclasses import asdict, dataclass
from typing import Any

from nemo_taskseed.filter.verify.sandbox_harness import decode_value, freeze_value
from nemo_taskseed.filter.verify.sandbox_runner import REPORT_CAP_BYTES, RawRun
from nemo_taskseed.filter.verify.sandbox_settings import MIB, Limits

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
        return {freeze_value(trusted_value(e)) for e in node.elts}
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _Untrusted("dict unpacking")
        return {freeze_value(trusted_value(k)): trusted_value(v) for k, v in zip(node.keys, node.values)}
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
            stderr_tail=(tail + f"\nstopped: over {REPORT_CAP_BYTES // MIB} MiB on the report channel")[-500:],
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
            holds = check.holds(decode_value(entry["v"]))
        except (TypeError, ValueError, KeyError) as exc:
            holds, tail = False, (tail + f"\nunreadable value for test {i}: {exc}")[-500:]
        if not holds:
            return SandboxResult("failed", raw.returncode, seconds, i, tail, **extra)
    return SandboxResult("passed", raw.returncode, seconds, **extra)
