"""Where the project keeps caches (catalog index, converted models) and finds its config files."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """`$TASKSEED_CACHE_DIR` (CI points it inside the clone), else the XDG cache."""
    root = os.environ.get("TASKSEED_CACHE_DIR")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nemo_taskseed"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def package_data(*parts: str) -> Path:
    """A folder or file shipped inside the installed package (configs, launch templates).

    Wheels are installed unpacked, so the traversable is a real folder; a zipped install is not
    supported (jinja2 and OmegaConf read from paths).
    """
    return Path(str(resources.files("nemo_taskseed").joinpath(*parts)))


def packaged_configs_dir() -> Path:
    """The configs the package ships: every stage's defaults, presets, prompts, blends."""
    return package_data("configs")


# `taskseed init` marks the config tree it writes: a folder that merely happens to be called
# `configs/` (a Hydra project's, say) is never read as ours.
PROJECT_MARKER = ".taskseed-configs"


def project_configs_dir() -> Path | None:
    """A user's own config tree: `$TASKSEED_CONFIG_DIR`, else `./configs` when `taskseed init` made it.
    Its files are found before the packaged ones of the same name, and its `base/*.yaml` are layered
    over the packaged defaults."""
    env = os.environ.get("TASKSEED_CONFIG_DIR")
    if env:
        return Path(env)
    local = Path("configs")
    return local if (local / PROJECT_MARKER).is_file() else None


def config_dirs() -> list[Path]:
    """Where config names are looked up, first match wins: the project's tree, then the package's."""
    project = project_configs_dir()
    return ([project] if project is not None else []) + [packaged_configs_dir()]


def find_config(relative: str | Path, suffixes: tuple[str, ...] = ("", ".yaml")) -> Path | None:
    """`relative` (e.g. `default`, `blends/example_pretraining`) under the first config dir that has it."""
    for folder in config_dirs():
        for suffix in suffixes:
            candidate = folder / f"{relative}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def config_files(subdir: str, pattern: str = "*.yaml") -> list[Path]:
    """Files of one config folder (`recipes`, `prompts`) across the config dirs, a project's file
    shadowing the packaged one of the same name."""
    seen: dict[str, Path] = {}
    for folder in config_dirs():
        for f in sorted((folder / subdir).glob(pattern)):
            seen.setdefault(f.name, f)
    return [seen[name] for name in sorted(seen)]
