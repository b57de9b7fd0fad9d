"""Shards: the unit of work every step schedules, writes, resumes and reports on.

A shard is one Curator task. Each step turns its input into shard tasks, runs them through a
Curator `Pipeline` on any executor (inline, Ray Data, Xenna; one node or many), and every shard's
last stage writes that shard's outputs atomically, then its done marker:

    <step>/<kind>/part-<shard>.jsonl     the shard's records (e.g. generate/generated/part-arc_easy.00000.jsonl)
    <step>/shards/<shard>.json           the done marker: fingerprint of what the shard was made
                                         from, its counts, the node and worker that ran it

The marker is written last, so a shard is finished exactly when its marker exists and its
fingerprint matches what the shard would be made from now; a restart skips finished shards and
redoes the rest. The driver never holds a shard's records: it merges the markers' counts into the
step summary. Nothing here depends on shard size, executor or worker count except the part files'
boundaries, which follow the input (seeds: subtask and position).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nemo_taskseed.utils.jsonl import write_json

MARKER_SCHEMA = "taskseed.shard/1"
MARKERS_DIR = "shards"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A file-system-safe, readable piece of a shard name (task names hold '/', ':', spaces)."""
    return _UNSAFE.sub("-", text).strip("-.") or "x"


def shard_name(group: str, index: int) -> str:
    """`<group>.<index:05d>`: sorts by group, then position, whatever the shard count."""
    return f"{safe_name(group)}.{index:05d}"


def part_path(step_dir: str | Path, kind: str, shard: str, suffix: str = ".jsonl") -> Path:
    return Path(step_dir) / kind / f"part-{shard}{suffix}"


def part_files(step_dir: str | Path, kind: str, suffix: str = ".jsonl") -> list[Path]:
    """Every `<kind>/part-*` file of a step folder, sorted by shard name."""
    return sorted((Path(step_dir) / kind).glob(f"part-*{suffix}"))


def shard_of_part(path: str | Path, suffix: str = ".jsonl") -> str:
    name = Path(path).name
    return name[len("part-") : -len(suffix)] if name.startswith("part-") and name.endswith(suffix) else Path(path).stem


def marker_path(step_dir: str | Path, shard: str) -> Path:
    return Path(step_dir) / MARKERS_DIR / f"{shard}.json"


def fingerprint(*parts: Any) -> str:
    """sha256 of the canonical JSON of `parts`: what a shard's outputs are a function of."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """Size and modification time: cheap enough to check every input of a 70M-record run on restart
    (hashing 300 GB is not); a rewritten input always changes its mtime."""
    st = Path(path).stat()
    return {"name": Path(path).name, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_marker(step_dir: str | Path, shard: str) -> dict[str, Any] | None:
    path = marker_path(step_dir, shard)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == MARKER_SCHEMA else None


def is_done(step_dir: str | Path, shard: str, shard_fingerprint: str, outputs: Iterable[str | Path] = ()) -> bool:
    marker = read_marker(step_dir, shard)
    if marker is None or marker.get("fingerprint") != shard_fingerprint:
        return False
    return all(Path(p).is_file() for p in outputs)


def clear_marker(step_dir: str | Path, shard: str) -> None:
    """Before a shard is (re)written: from here on nothing claims its outputs are complete."""
    marker_path(step_dir, shard).unlink(missing_ok=True)


def write_marker(step_dir: str | Path, shard: str, shard_fingerprint: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Write the done marker (atomically, after the shard's outputs); returns it."""
    marker = {
        "schema": MARKER_SCHEMA,
        "shard": shard,
        "fingerprint": shard_fingerprint,
        "worker": worker_identity(),
        **summary,
    }
    write_json(marker_path(step_dir, shard), marker, sort_keys=True)
    return marker


def read_markers(step_dir: str | Path, shards: Iterable[str]) -> dict[str, dict[str, Any] | None]:
    return {s: read_marker(step_dir, s) for s in shards}


def worker_identity() -> dict[str, Any]:
    """Where this code runs: the Ray node id when inside a Ray worker or driver, else the host.

    Recorded in every shard marker, so a multi-node run shows which node did which shard.
    """
    identity: dict[str, Any] = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "node_id": f"local:{socket.gethostname()}",
    }
    try:
        import ray

        if ray.is_initialized():
            identity["node_id"] = ray.get_runtime_context().get_node_id()
    except Exception:  # Ray absent or not initialized here: the host is the node
        pass
    return identity


def ray_task_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """`ray_stage_spec` for a model-free shard stage: a Ray *task* spread over the nodes.

    Curator makes a stage with `setup()` an actor (one pool per stage); as tasks, consecutive
    stages fuse into one Ray Data operator that runs one shard per core. SPREAD scheduling sends
    shards to every node instead of packing short tasks onto the driver's node.
    """
    return _spread(spec, actor=False)


def ray_actor_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """`ray_stage_spec` for a model stage: an actor pool (each worker keeps its engine or client)
    spread over the nodes. Ray's default placement packs actors onto one node until half its CPUs
    are taken, so light workers (a client of remote servers at a quarter core each) would all
    start on the driver's node and the other nodes would idle."""
    return _spread(spec, actor=True)


def _spread(spec: dict[str, Any], *, actor: bool) -> dict[str, Any]:
    """`spec` as a Ray task or actor stage with SPREAD scheduling, its other remote args kept."""
    from nemo_curator.backends.utils import RayStageSpecKeys

    remote = {**(spec.get(RayStageSpecKeys.RAY_REMOTE_ARGS.value) or {}), "scheduling_strategy": "SPREAD"}
    return {**spec, RayStageSpecKeys.IS_ACTOR_STAGE.value: actor, RayStageSpecKeys.RAY_REMOTE_ARGS.value: remote}


def add_counts(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """Sum nested count dicts (the shape shard summaries use): {"a": 1, "b": {"c": 2}}."""
    for key, value in part.items():
        if isinstance(value, dict):
            add_counts(total.setdefault(key, {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
    return total


def remove_unplanned(
    step_dir: str | Path, planned: set[str], kinds: tuple[str, ...], extra: tuple[tuple[str, str], ...] = ()
) -> list[str]:
    """Delete the markers, `<kind>/part-*` files and `extra` (sub-folder, suffix) files of shards
    that are no longer planned (seeds removed, shard size changed): the folder never mixes runs.
    Returns the shards whose markers were removed."""
    step_dir, removed = Path(step_dir), []
    for marker in (step_dir / MARKERS_DIR).glob("*.json"):
        if marker.stem not in planned:
            removed.append(marker.stem)
            marker.unlink()
    for kind in kinds:
        for part in part_files(step_dir, kind):
            if shard_of_part(part) not in planned:
                part.unlink()
    for folder, suffix in extra:
        for path in (step_dir / folder).glob(f"*{suffix}"):
            if path.name[: -len(suffix)] not in planned:
                path.unlink()
    return sorted(removed)


def read_part_records(step_dir: str | Path, kind: str) -> list[dict[str, Any]]:
    """Every record of a step's `<kind>/part-*.jsonl`, in shard order (for tests and notebooks:
    pipelines stream parts one at a time instead)."""
    from nemo_taskseed.utils.jsonl import read_jsonl

    return [row for path in part_files(step_dir, kind) for _, row in read_jsonl(path)]
