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
    "ablate",  # several continuation runs planned, launched and compared
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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of the nodes under `if TYPE_CHECKING:`: imports for annotations, never run."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return skipped


def _imported_modules(path: Path, modules: set[str], text: str | None = None) -> set[str]:
    """The nemo_taskseed modules one file imports when it runs, at module level or inside
    functions (not under `if TYPE_CHECKING:`): for `from a.b import c`, the module `a.b.c` when
    there is one, else `a.b`."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text() if text is None else text, filename=str(path))
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: against this file's package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules}


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
    modules = set(files)
    return {name: _imported_modules(path, modules) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle_between_modules():
    """No module imports itself through others, not even lazily inside a function: a circle
    means two modules that are one concept, or a concept in the wrong one of them. (Imports only
    for annotations, under `if TYPE_CHECKING:`, never run and are not counted.)"""
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    # Lazy imports inside functions count, and `from package import module` names the module.
    graph = import_graph()
    assert "nemo_taskseed.tokenize.stages" in graph["nemo_taskseed.tokenize.step"]
    assert "nemo_taskseed.pipeline.driver" in graph["nemo_taskseed.seeds.step"]


def test_the_cycle_check_reads_lazy_and_relative_imports_not_type_only_ones():
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import stages\n"
        "if TYPE_CHECKING:\n"
        "    from nemo_taskseed.seeds.step import collect_seeds\n"
        "def f():\n"
        "    from nemo_taskseed.pipeline import driver\n"
        "    import nemo_taskseed.tokenize.step\n"
    )
    found = _imported_modules(ROOT / "seeds" / "probe.py", set(import_graph()), source)
    assert found == {"nemo_taskseed.seeds.stages", "nemo_taskseed.pipeline.driver", "nemo_taskseed.tokenize.step"}
