"""Which modules of nemo_taskseed/ does no fast test exercise?

    .venv/bin/python scripts/fast_coverage.py                     # runs the fast tier under coverage
    .venv/bin/python scripts/fast_coverage.py -- tests/test_blend.py   # pytest arguments after --
    .venv/bin/python scripts/fast_coverage.py --data .coverage    # reads a coverage data file instead
    .venv/bin/python scripts/fast_coverage.py --save .coverage    # keeps the run's data for later --data

The fast tier (`pytest --fast`, tests/conftest.py; what `scripts/test.sh --fast` runs) is run under
coverage.py in this process's interpreter, measuring nemo_taskseed/ in the test process and the
multiprocessing workers and Python child processes it starts. A module counts as exercised when
at least one line inside one of its function or method bodies ran: the lines that run on import
(imports, constants, class bodies, `def` lines) only show it was imported. Modules that have no function body at all are listed apart
and never fail the check.

Prints one line per module no fast test exercises (never imported, or imported only) and exits 1
when there is one; 0 when every module with a function body is exercised.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "nemo_taskseed"
# Modules whose framework is not in .venv: a fast test runs them up to it (a request or spec read
# and checked, a clear error where the framework is missing); they run whole only in their own
# environment, in these tests of the full tier. Printed with the report so nobody reads "exercised"
# as "run whole".
RUN_WHOLE_ELSEWHERE = {
    "nemo_taskseed.launch.nemo_run_submit": (
        ".venv-launch (nemo-run)",
        "tests/test_launch_slurm.py::test_nemo_run_slurm_executor_dry_run_writes_sbatch",
    ),
    "nemo_taskseed.recipes.nemo2_continued_pretraining": (
        ".venv-nemo2 (nemo_toolkit 2.7)",
        "tests/test_train_recipes.py::test_nemo2_recipe_is_built_with_the_same_blend_and_budget",
    ),
    "nemo_taskseed.train.nemo2": (
        ".venv-nemo2 (nemo_toolkit 2.7)",
        "tests/test_train_recipes.py::test_nemo2_recipe_is_built_with_the_same_blend_and_budget",
    ),
}


def function_body_lines(source: str) -> set[int]:
    """Line numbers inside function and method bodies (any nesting), without the `def` lines
    and decorators, which run on import."""
    tree = ast.parse(source)
    body: set[int] = set()
    headers: set[int] = set()
    for node in ast.walk(tree):
        # (a lambda's body shares its line with the code that defines it: not counted)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0].lineno
            body.update(range(first, node.body[-1].end_lineno + 1))
            headers.update(range(min([node.lineno, *(d.lineno for d in node.decorator_list)]), first))
            if node.body[0].lineno == node.lineno:  # `def f(): return 1`: body on the def line
                headers.add(node.lineno)
    return body - headers


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def run_fast_tier(data_file: Path, pytest_args: list[str]) -> int:
    """The fast tier under coverage; the measured data combined into `data_file`. Returns pytest's status."""
    rc = data_file.parent / "coveragerc"
    rc.write_text(
        "[run]\n"
        f"source = {PACKAGE}\n"
        f"data_file = {data_file}\n"
        "parallel = true\n"
        "concurrency = thread, multiprocessing\n"
        # _exit: tests/conftest.py ends the test process with os._exit (after pytest reported): save
        # first. subprocess: Python child processes a fast test starts (tests/test_quiet_terminal.py's
        # probe) are measured too: what they run is exercised by that test.
        "patch =\n    _exit\n    subprocess\n"
    )
    env = {**os.environ, "TASKSEED_CACHE_DIR": os.environ.get("TASKSEED_CACHE_DIR", str(REPO / ".cache"))}
    cmd = [sys.executable, "-m", "coverage", "run", f"--rcfile={rc}", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    cmd += ["--fast", *pytest_args]
    print("$", " ".join(cmd), flush=True)
    status = subprocess.run(cmd, cwd=REPO, env=env).returncode
    subprocess.run([sys.executable, "-m", "coverage", "combine", f"--rcfile={rc}", "-q"], cwd=REPO, check=True)
    return status


def executed_lines(data_file: Path) -> dict[str, set[int]]:
    from coverage import CoverageData

    data = CoverageData(basename=str(data_file))
    data.read()
    return {str(Path(f).resolve()): set(data.lines(f) or ()) for f in data.measured_files()}


def unexercised(executed: dict[str, set[int]]) -> tuple[list[tuple[str, str]], list[str]]:
    """(module, why) for every module with function bodies none of which ran; and the modules
    that have no function body."""
    missing, bodiless = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        body = function_body_lines(path.read_text())
        name = module_name(path)
        if not body:
            bodiless.append(name)
            continue
        ran = executed.get(str(path.resolve()))
        if ran is None:
            missing.append((name, "never imported"))
        elif not ran & body:
            missing.append((name, "imported only: no function body ran"))
    return missing, bodiless


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pytest_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="read this coverage data file; run nothing")
    parser.add_argument("--save", type=Path, default=None, help="keep the run's combined data file here")
    args = parser.parse_args(own)
    if args.data is not None:
        if not args.data.is_file():
            parser.error(f"--data: no such file: {args.data}")
        executed = executed_lines(args.data)
    else:
        with tempfile.TemporaryDirectory(prefix="fast-coverage-") as tmp:
            data_file = Path(tmp) / ".coverage"
            status = run_fast_tier(data_file, pytest_args)
            if status not in (0, 1):  # 1: some test failed; the coverage of the rest still counts
                print(f"pytest exited {status}: no coverage report", file=sys.stderr)
                return status
            if status == 1:
                print("note: some fast tests failed; what they ran still counts", file=sys.stderr)
            executed = executed_lines(data_file)
            if args.save is not None:
                args.save.write_bytes(data_file.read_bytes())
    missing, bodiless = unexercised(executed)
    total = sum(1 for _ in PACKAGE.rglob("*.py"))
    print(f"\n{total} modules in nemo_taskseed/; {len(bodiless)} without a function body (not counted)")
    print("run whole only in their own environment (a fast test runs them up to their framework):")
    for name, (env, test) in RUN_WHOLE_ELSEWHERE.items():
        print(f"  {name}: {env}, {test}")
    if missing:
        print(f"{len(missing)} module(s) that no fast test exercises:")
        for name, why in missing:
            print(f"  {name}: {why}")
        return 1
    print("every module with a function body is exercised by a fast test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
