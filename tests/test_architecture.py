"""Imports go one way: a package may import only packages below it in `LAYERS` (docs/architecture.md).

Parsed from source (every `import` and `from ... import`, including ones inside functions), so a
lazy import that goes the wrong way fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nemo_taskseed

ROOT = Path(nemo_taskseed.__file__).parent

# Lowest layer first. Stages follow pipeline order: a later stage may read an earlier one's
# formats (blend reads tokenize's manifest), never the reverse.
LAYERS = [
    "errors",
    "paths",
    "compat",
    "config",
    "project",  # `taskseed init`: copies the packaged configs
    "utils",
    "schema",  # foundations
    "models",
    "llm",
    "registry",
    "demo",
    "pipeline",  # shared services
    "catalog",
    "seeds",
    "generate",
    "filter",
    "tokenize",
    "blend",  # data stages
    "export",  # the curated set as a Hugging Face dataset with its card
    "train",
    "launch",
    "evaluate",
    "recipes",  # hand-off to training; recipes: the entry points run on the nodes
    "run",  # `taskseed run`: the step sequence
    "dryrun",  # `taskseed run --dry-run`
    "preview",  # a few seeds through generate and filter, side by side
    "cli",
    "__main__",  # the thin CLI
]


def _package(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, first-level package) of every import of nemo_taskseed.* in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this file's package
                base = list(path.relative_to(ROOT).parent.parts)[: len(path.relative_to(ROOT).parts) - node.level]
                names = [".".join(["nemo_taskseed", *base, *(node.module or "").split(".")]).rstrip(".")]
            else:
                names = [node.module or ""]
            if names == ["nemo_taskseed"]:
                names = [f"nemo_taskseed.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "nemo_taskseed" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def test_every_package_is_placed_in_a_layer():
    packages = {_package(p) for p in ROOT.rglob("*.py")} - {"__init__"}
    assert packages - set(LAYERS) == set(), "add new packages to LAYERS and docs/architecture.md"


def test_imports_go_one_way():
    rank = {name: i for i, name in enumerate(LAYERS)}
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        own = _package(path)
        if own == "__init__":
            continue
        for line, imported in _imports(path):
            if imported != own and rank.get(imported, -1) >= rank[own]:
                wrong.append(f"{path.relative_to(ROOT.parent)}:{line}: {own} imports {imported}")
    assert not wrong, "imports that go up the layers:\n" + "\n".join(wrong)


def test_the_check_sees_a_wrong_import(tmp_path):
    # The checker itself: a lazy import inside a function is found, with its line.
    fake = tmp_path / "probe.py"
    fake.write_text("import os\n\ndef f():\n    from nemo_taskseed.filter import step\n")
    assert _imports(fake) == [(4, "filter")]
