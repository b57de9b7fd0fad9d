"""One run per output folder: an advisory lock file that says who holds it.

Two runs writing one folder compute every request twice, or silently replace each other's
outputs while both print success. Each step therefore holds `<out>/.taskseed.lock` for as long
as it writes there. The lock is a POSIX record lock on that file (`fcntl.lockf`), which the
kernel drops the moment its process dies, kill -9 included: a stale lock of a dead run is not a
lock at all, and nothing has to guess from a pid whether its holder still lives. POSIX locks,
unlike flock(2), belong to the process and are not inherited across fork: an engine process vLLM
forks (and that may outlive a killed driver) does not keep the folder locked. The file's content
(pid, host, step, start time, command) is only there to name the holder in the error. The one
trap of POSIX locks (closing ANY descriptor of the file drops the lock) is why this module opens
the file once and never reads it while holding it.

Shared filesystems: NFS carries POSIX locks (NLM / NFSv4), Lustre with `-o flock` or
`-o localflock`; on a mount without lock support the lock cannot be taken and the step says so
instead of running unprotected.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import inspect
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nemo_taskseed.errors import UserError

LOCK_NAME = ".taskseed.lock"
# Locks this process holds (a step's entry point may call another that locks the same folder).
_HELD: dict[str, int] = {}


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return "another process (its details could not be read)"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return (
        f"`{info.get('step', '?')}` pid {info.get('pid', '?')} on {info.get('host', '?')} since {started} "
        f"({info.get('command', '?')})"
    )


@contextlib.contextmanager
def output_lock(out_dir: str | Path, step: str) -> Iterator[Path]:
    """Hold `<out_dir>/.taskseed.lock` for the block; fail at once, naming the holder, if another
    process holds it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out.resolve() / LOCK_NAME
    key = str(path)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield path
        finally:
            _HELD[key] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise UserError(
                f"{out} is in use by {_holder(path)}: one run per output folder. Wait for it to "
                "finish, stop it, or write to another folder"
            ) from None
        raise UserError(
            f"{path}: cannot lock the output folder ({exc.strerror}); a filesystem without lock "
            "support cannot protect a folder from a second run"
        ) from exc
    _remove_stale_temp_files(out)
    info = {
        "step": step,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.time(),
        "command": " ".join(sys.argv)[:300],
    }
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    _HELD[key] = 1
    try:
        yield path
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # the file stays (unlinking a lock file races with the next taker)
        fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)


# Temp files our writers make beside their target (`.<name>.tmp` / `.<name>.tmp<pid>`, renamed
# into place when complete). One left behind belongs to a run that died mid-write; holding the
# lock, no live run can own it. On a full disk they are what keeps it full for the rerun.
_STALE_TEMP = re.compile(r"^\..+\.tmp\d*$")


def _remove_stale_temp_files(out: Path) -> int:
    removed = 0
    for root, _dirs, files in os.walk(out):
        for name in files:
            if _STALE_TEMP.match(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(root, name))
                    removed += 1
    return removed


def holds_output_lock(step: str, arg: str = "out_dir") -> Callable:
    """Decorator for a step's entry point: its body runs holding the lock of the folder passed as
    parameter `arg`."""

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            out_dir = signature.bind(*args, **kwargs).arguments[arg]
            with output_lock(out_dir, step):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
