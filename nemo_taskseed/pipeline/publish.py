"""A step's outputs are published as a set: `summary.json`, written last, lists every file of the
set with its size and sha256; readers take only what it lists.

A kill between a step's output files used to leave new parts beside the previous run's reports,
with nothing marking the set as mixed, and a folder whose seeds had grown looked complete until
the rerun ended. Now a step removes its `summary.json` before it changes anything (from then on
the folder claims nothing), each shard writer records its parts' size and sha256 in its done
marker (hashed while writing), and the step writes `summary.json` with the merged list at the
very end. The next step reads the parts that list names, checks their sizes, and refuses a
folder its producer did not finish. A folder made by hand (no `shards/` markers, no summary) is
read as it is.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from nemo_taskseed.errors import UserError

SUMMARY = "summary.json"


def begin(out_dir: str | Path) -> None:
    """Before a step changes its folder: nothing in it claims to be a finished set any more."""
    (Path(out_dir) / SUMMARY).unlink(missing_ok=True)


def file_entry(path: str | Path) -> dict[str, Any]:
    """Size and sha256 of a small file (reports); parts get theirs while being written."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return {"bytes": size, "sha256": digest.hexdigest()}


def published_files(step_dir: str | Path, kind: str) -> list[Path] | None:
    """The `<kind>/part-*.jsonl` files `step_dir`'s finished run published, checked against their
    listed sizes; None for a folder not made by a taskseed step (read it as it is). Raises a
    UserError for a step folder that is not a finished set."""
    step_dir = Path(step_dir)
    summary = step_dir / SUMMARY
    if not summary.is_file():
        if (step_dir / "shards").is_dir():
            raise UserError(
                f"{step_dir} has no {SUMMARY}: the step that writes it did not finish (it was killed, "
                "failed, or is still running), so its files are not a complete set. Rerun that step."
            )
        return None
    try:
        published = json.loads(summary.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{summary}: unreadable ({exc}); rerun the step that writes it") from exc
    listed = published.get("files")
    if listed is None:
        return None  # written before summaries listed their files
    _refuse_stale_inputs(step_dir, published.get("inputs") or {})
    out = []
    for rel, entry in sorted(listed.items()):
        if not rel.startswith(f"{kind}/part-"):
            continue
        path = step_dir / rel
        if not path.is_file():
            raise UserError(f"{path} is listed in {summary} but missing: the folder changed after its step finished")
        if path.stat().st_size != entry["bytes"]:
            raise UserError(
                f"{path} is {path.stat().st_size} bytes, {summary} says {entry['bytes']}: the folder "
                "changed after its step finished (or another run wrote into it)"
            )
        out.append(path)
    return out


def shard_files(step_dir: str | Path, marker: dict[str, Any], shard: str, kinds: tuple[str, ...]) -> dict[str, Any]:
    """A finished shard's part files with size and sha256: from its marker, or (markers written
    before they carried them) read from the files now."""
    if marker.get("files"):
        return dict(marker["files"])
    from nemo_taskseed.pipeline.shards import part_path

    out = {}
    for kind in kinds:
        path = part_path(step_dir, kind, shard)
        if path.is_file():
            out[f"{kind}/{path.name}"] = file_entry(path)
    return out


def _set_digest(summary_path: Path) -> str | None:
    """A digest of the set a summary publishes (its file list with their hashes), not of the
    summary's bytes: a rerun that changes nothing (only its timings) does not make readers stale."""
    try:
        files = json.loads(summary_path.read_text()).get("files")
    except (OSError, json.JSONDecodeError):
        return None
    if files is None:
        return file_entry(summary_path)["sha256"]
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def input_record(in_dir: str | Path | None) -> dict[str, Any]:
    """What a step read, to record in its summary: the digest of the producing step's set."""
    if in_dir is None or not (Path(in_dir) / SUMMARY).is_file():
        return {}
    path = (Path(in_dir) / SUMMARY).resolve()
    return {str(path): _set_digest(path)}


def _refuse_stale_inputs(step_dir: str | Path, recorded: dict[str, Any]) -> None:
    """Refuse a set made from inputs that have changed since (the producing step ran again).
    `recorded`: the `inputs` of the set's summary."""
    for path, digest in recorded.items():
        now = _set_digest(Path(path)) if Path(path).is_file() else None
        if now != digest:
            raise UserError(
                f"{step_dir} is stale: it was made from {path}, whose set has changed (or gone) since. "
                "Rerun its step to bring it up to date."
            )
