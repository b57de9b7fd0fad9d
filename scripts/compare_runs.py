"""Are two run folders the same output? For refactors that must not change what a step writes.

    .venv/bin/python scripts/compare_runs.py RUN_A RUN_B [--ignore GLOB ...] [--volatile KEY ...]

Every file of both trees is compared byte for byte, except:
- JSON files (markers, summaries, manifests): compared after dropping what differs between two runs
  of the same code (who ran it and when: `worker`, `seconds`, timings, absolute paths of the run
  folder);
- logs, locks, request caches and the default ignores below, which are not outputs.
`--volatile fingerprint` also drops the shard fingerprints: for inputs written anew (a test's
temporary folder), whose modification times are part of every fingerprint.
Prints each difference (missing on one side, or differing, with the first differing JSON key) and
exits 1 when there is one.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path

IGNORE = [
    "*.log",
    "*.lock",
    "**/cache/*",
    "*.sqlite*",
    "*/.dedup_cache/*",
    "*.png",  # matplotlib embeds nothing variable, but fonts may differ between machines
]
# Keys whose values say who ran a shard, when and how long it took: never part of the output.
VOLATILE = {
    "worker",
    "seconds",
    "started",
    "finished",
    "elapsed",
    "elapsed_s",
    "wall_seconds",
    "embed_seconds",
    "phase_seconds",
    "created",
    "created_at",
    "created_unix",
    "mtime_ns",
    "timestamp",
    "by_node",
    "gpu_seconds",
    "model_seconds",
}


def _normalize(value, roots: tuple[str, ...], volatile: frozenset[str] = frozenset(VOLATILE)):
    if isinstance(value, dict):
        return {_normalize(k, roots): _normalize(v, roots, volatile) for k, v in value.items() if k not in volatile}
    if isinstance(value, list):
        return [_normalize(v, roots, volatile) for v in value]
    if isinstance(value, str):
        for root in roots:
            value = value.replace(root, "<RUN>")
        return value
    return value


def _first_difference(a, b, path: str = "") -> str:
    if type(a) is not type(b):
        return f"{path or '/'}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}/{key}: only in {'B' if key not in a else 'A'}"
            if a[key] != b[key]:
                return _first_difference(a[key], b[key], f"{path}/{key}")
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path or '/'}: {str(a)[:120]!r} vs {str(b)[:120]!r}"


def files(root: Path, ignore: list[str]) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not any(fnmatch.fnmatch(rel, pattern) for pattern in ignore):
            found[rel] = path
    return found


def compare(a: Path, b: Path, ignore: list[str], volatile: tuple[str, ...] = ()) -> list[str]:
    left, right = files(a, ignore), files(b, ignore)
    roots = (str(a.resolve()), str(b.resolve()), str(a.resolve().parent), str(b.resolve().parent))
    problems = [f"only in A: {rel}" for rel in sorted(set(left) - set(right))]
    problems += [f"only in B: {rel}" for rel in sorted(set(right) - set(left))]
    for rel in sorted(set(left) & set(right)):
        x, y = left[rel].read_bytes(), right[rel].read_bytes()
        if x == y:
            continue
        if rel.endswith(".json"):
            try:
                keys = frozenset(VOLATILE | set(volatile))
                jx, jy = _normalize(json.loads(x), roots, keys), _normalize(json.loads(y), roots, keys)
            except ValueError:
                jx = jy = None
            if jx is not None and jx == jy:
                continue
            if jx is not None:
                problems.append(f"differs: {rel}: {_first_difference(jx, jy)}")
                continue
        problems.append(f"differs: {rel} ({len(x)} vs {len(y)} bytes)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--ignore", action="append", default=[], help="glob of relative paths to skip (repeatable)")
    parser.add_argument("--volatile", action="append", default=[], help="JSON key to leave out too (repeatable)")
    args = parser.parse_args(argv)
    problems = compare(args.a, args.b, IGNORE + args.ignore, tuple(args.volatile))
    n = len(files(args.a, IGNORE + args.ignore))
    for problem in problems:
        print(problem)
    print(f"{n} files compared: {'identical' if not problems else f'{len(problems)} differences'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
