"""Check our Bridge settings against the real Megatron-Bridge sources without importing them.

Megatron-Bridge cannot be imported on a CPU-only Python 3.11 machine (see bridge.py), but its
wheel can be read: this parses the dataclasses in the megatron-bridge and megatron-core wheels
(zip + ast) and reports every setting path or recipe function that does not exist. That catches
typos and upstream renames at the exact version we target.

    pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
        megatron-bridge==0.6.2 megatron-core==0.19.2 -d "$TASKSEED_CACHE_DIR/wheels"
    python -m nemo_taskseed.train.bridge_schema "$TASKSEED_CACHE_DIR/wheels"
"""

from __future__ import annotations

import ast
import re
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BRIDGE_WHEEL = "megatron_bridge-*.whl"
CORE_WHEEL = "megatron_core-*.whl"


@dataclass
class SourceIndex:
    """Class name -> annotated fields and base-class names, over every module of the wheels."""

    fields: dict[str, set[str]] = field(default_factory=dict)
    bases: dict[str, set[str]] = field(default_factory=dict)
    annotations: dict[str, dict[str, str]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # `import X as Y`: Y -> X
    sources: dict[str, str] = field(default_factory=dict)  # module path -> text

    def all_fields(self, cls: str, _seen: set[str] | None = None) -> set[str]:
        seen = _seen if _seen is not None else set()
        cls = self.aliases.get(cls, cls)
        if cls in seen:
            return set()
        seen.add(cls)
        out = set(self.fields.get(cls, set()))
        for base in self.bases.get(cls, set()):
            out |= self.all_fields(base, seen)
        return out


def index_wheels(wheel_dir: str | Path) -> SourceIndex:
    wheel_dir = Path(wheel_dir)
    wheels = sorted(wheel_dir.glob(BRIDGE_WHEEL)) + sorted(wheel_dir.glob(CORE_WHEEL))
    if len(wheels) < 2:
        raise FileNotFoundError(f"need {BRIDGE_WHEEL} and {CORE_WHEEL} in {wheel_dir}")
    index = SourceIndex()
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if not name.startswith("megatron/") or not name.endswith(".py"):
                    continue
                text = zf.read(name).decode("utf-8", errors="replace")
                index.sources[name] = text
                try:
                    with warnings.catch_warnings():  # upstream sources carry invalid escape sequences
                        warnings.simplefilter("ignore", SyntaxWarning)
                        warnings.simplefilter("ignore", DeprecationWarning)
                        tree = ast.parse(text)
                except SyntaxError:
                    continue
                for node in ast.walk(tree):
                    if isinstance(node, ast.ImportFrom):
                        for alias in node.names:
                            if alias.asname and alias.asname != alias.name:
                                index.aliases[alias.asname] = alias.name
                    elif isinstance(node, ast.ClassDef):
                        anns = {
                            s.target.id: ast.unparse(s.annotation)
                            for s in node.body
                            if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                        }
                        index.fields.setdefault(node.name, set()).update(anns)
                        index.annotations.setdefault(node.name, {}).update(anns)
                        index.bases.setdefault(node.name, set()).update(
                            b.id if isinstance(b, ast.Name) else b.attr
                            for b in node.bases
                            if isinstance(b, (ast.Name, ast.Attribute))
                        )
    return index


def missing_settings(settings: dict[str, Any], index: SourceIndex) -> list[str]:
    """Setting paths (`section.field` or top-level `field`) that ConfigContainer does not have."""
    container = index.annotations.get("ConfigContainer", {})
    missing = []
    for path in settings:
        section, _, leaf = path.rpartition(".")
        if not section:
            if leaf not in index.all_fields("ConfigContainer"):
                missing.append(path)
            continue
        if section not in container:
            missing.append(path)
            continue
        # `model: GPTModelProvider | HybridModelProvider | ...`: any member of the union may hold it.
        types = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", container[section])
        if not any(leaf in index.all_fields(t) for t in types):
            missing.append(path)
    return missing


def recipe_function_exists(recipe: str, index: SourceIndex) -> bool:
    """`megatron.bridge.recipes.llama:llama31_8b_pretrain_config` is exported by that package."""
    module, _, function = recipe.partition(":")
    base = module.replace(".", "/")
    for path in (f"{base}/__init__.py", f"{base}.py"):
        text = index.sources.get(path)
        if text is not None and re.search(rf"\b{re.escape(function)}\b", text):
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    from nemo_taskseed.train.bridge import bridge_settings
    from nemo_taskseed.train.plan import BlendPlan
    from nemo_taskseed.train.spec import available_recipes, build_spec, load_train_config

    argv = sys.argv[1:] if argv is None else argv
    index = index_wheels(argv[0])
    plan = BlendPlan(Path("plan.json"), 4096, 10**9, ((1.0, "/data/x"),))
    failures = 0
    for recipe in available_recipes():
        spec = build_spec(load_train_config(None, [f"train.recipe={recipe}"]), plan=plan)
        missing = missing_settings(bridge_settings(spec), index)
        ok_fn = recipe_function_exists(spec.bridge_recipe, index)
        failures += bool(missing) + (not ok_fn)
        print(
            f"{recipe}: {'ok' if not missing and ok_fn else 'FAIL'} "
            f"(missing settings: {missing or 'none'}; recipe function {'found' if ok_fn else 'NOT FOUND'})"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
