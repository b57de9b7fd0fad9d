"""Where the project keeps caches (catalog index, converted models)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """`$TASKSEED_CACHE_DIR` (CI points it inside the clone), else the XDG cache."""
    root = os.environ.get("TASKSEED_CACHE_DIR")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nemo_taskseed"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def repo_configs_dir() -> Path:
    """The `configs/` folder shipped next to the package (editable installs and checkouts)."""
    return Path(__file__).resolve().parent.parent / "configs"
