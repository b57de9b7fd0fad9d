"""A full disk is an error naming the path, not a traceback, and leaves no temp file filling it.

`taskseed filter` writes its outputs onto a real 1 MiB tmpfs (mounted in a private user and mount
namespace with `unshare -rm`, so no root on the host is needed) that its outputs do not fit in.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
from test_filter_fixtures import fixture_rows, make_generated, make_seed, mc_fields, write_jsonl


def _can_mount_tmpfs(tmp_path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {tmp_path}"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.subprocess
def test_filter_on_a_full_disk_names_the_path_and_cleans_up(tmp_path, fixtures_hf):
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("this machine allows no user+mount namespace (unshare -rm), so no private tmpfs")
    rows = fixture_rows(fixtures_hf, "allenai/ai2_arc", "ARC-Easy", "train")
    seed = make_seed("arc", "arc_easy", mc_fields(rows[0]), 0)
    records = [make_generated(seed, mc_fields(rows[i % len(rows)]), sample_index=i) for i in range(2400)]
    write_jsonl(tmp_path / "gen" / "generated-00000.jsonl", records)  # ~2.4 MB in, outside the tmpfs
    assert (tmp_path / "gen" / "generated-00000.jsonl").stat().st_size > 2_000_000
    disk = tmp_path / "disk"
    disk.mkdir()
    inner = textwrap.dedent(f"""
        import json, os, subprocess, sys
        cmd = [sys.executable, "-m", "nemo_taskseed", "filter", "--in", {str(tmp_path / "gen")!r},
               "--out", {str(disk / "filter")!r}, "--executor", "inline", "--mirror", {str(fixtures_hf)!r},
               "--config", "benchmarks/smoke", "filter.verify.enabled=false"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        temps = [os.path.join(r, f) for r, _, fs in os.walk({str(disk)!r}) for f in fs if ".tmp" in f]
        print(json.dumps({{"rc": proc.returncode, "stderr": proc.stderr[-3000:], "temps": temps}}))
    """)
    script = tmp_path / "inner.py"
    script.write_text(inner)
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {disk} && {sys.executable} {script}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc"] == 1, result["stderr"]
    assert "No space left on device" in result["stderr"] and str(disk / "filter") in result["stderr"], result["stderr"]
    assert "Traceback" not in result["stderr"], result["stderr"]
    assert "rerun to resume" in result["stderr"]
    assert result["temps"] == []


def test_a_full_request_cache_says_the_disk_is_full(tmp_path):
    """The commit fails with SQLite's real reason (it used to be hidden behind "cannot rollback -
    no transaction is active"), and what was committed before stays readable."""
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("this machine allows no user+mount namespace (unshare -rm), so no private tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = tmp_path / "inner.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, sqlite3
        from nemo_taskseed.llm.cache import RequestCache
        cache = RequestCache({str(disk / "c.sqlite")!r})
        cache.put_many({{"first": (["ok"], "vllm")}})
        try:
            cache.put_many({{f"k{{i}}": (["x" * 4000], "vllm") for i in range(400)}})
            print(json.dumps({{"error": None}}))
        except sqlite3.Error as exc:
            print(json.dumps({{"error": str(exc), "first": cache.get_many(["first"])["first"]["outputs"]}}))
    """)
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {disk} && {sys.executable} {script}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["error"] and "full" in result["error"] and "rollback" not in result["error"], result
    assert result["first"] == ["ok"]


def test_machine_errors_are_named_with_their_path_and_code_errors_are_not():
    """What the CLI prints instead of a traceback (errors.environment_error), found through the
    chain of causes a library wraps them in; an error of the code itself is not one of them."""
    import errno
    import os
    import sqlite3

    from nemo_taskseed.errors import environment_error

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out/part-0.jsonl")
    assert environment_error(full) == f"/data/out/part-0.jsonl: {os.strerror(errno.ENOSPC)}"
    try:
        try:
            raise full
        except OSError as exc:
            raise RuntimeError("writer failed") from exc
    except RuntimeError as wrapped:
        assert environment_error(wrapped) == f"/data/out/part-0.jsonl: {os.strerror(errno.ENOSPC)}"
    read_only = OSError(errno.EROFS, os.strerror(errno.EROFS))  # names no file: the folder is named
    assert environment_error(read_only, folder="/data/out") == f"/data/out: {os.strerror(errno.EROFS)}"
    cache = sqlite3.OperationalError("database or disk is full")
    assert environment_error(cache).startswith("request cache: database or disk is full")
    assert environment_error(FileNotFoundError(errno.ENOENT, "No such file", "x.jsonl")) is None
    assert environment_error(ValueError("bad value")) is None
