"""What runs inside the code sandbox, and the value encoding both sides of it share.

`HARNESS` is the program the sandbox runs: it executes the solution, then evaluates each test's
expression and reports the value, one JSON line per test, on its reporting descriptor. The
values travel in a type-tagged JSON encoding (`_ENCODER`, the same source on both sides);
`decode_value` reads them back here, where they are judged (sandbox_checks.py).
"""

from __future__ import annotations

from typing import Any

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
HARNESS = (
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


def decode_value(e: Any) -> Any:
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
        return tuple(decode_value(x) for x in v)
    if kind == "list":
        return [decode_value(x) for x in v]
    if kind in ("set", "frozenset"):
        items = {freeze_value(decode_value(x)) for x in v}
        return frozenset(items) if kind == "frozenset" else set(items)
    if kind == "dict":
        return {freeze_value(decode_value(k)): decode_value(x) for k, x in v}
    raise ValueError(f"unknown value kind {kind!r}")


def freeze_value(v: Any) -> Any:
    return frozenset(v) if isinstance(v, set) else v
