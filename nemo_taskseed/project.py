"""A user's project folder: an editable copy of the packaged configs (`taskseed init`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from nemo_taskseed.paths import PROJECT_MARKER, packaged_configs_dir


def init_project(folder: Path, *, force: bool = False) -> tuple[list[Path], list[Path]]:
    """Copy every packaged config file to `folder/configs/`; returns (written, kept as they were).

    Files already there are kept unless `force`: a second `init` never loses a user's edits.
    """
    source = packaged_configs_dir()
    target = folder / "configs"
    written, kept = [], []
    for src in sorted(source.rglob("*.yaml")):
        dst = target / src.relative_to(source)
        if dst.exists() and not force:
            kept.append(dst)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        written.append(dst)
    (target / PROJECT_MARKER).write_text("made by `taskseed init`: taskseed reads this folder's configs first\n")
    return written, kept
