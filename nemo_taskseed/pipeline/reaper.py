"""Child processes die with the taskseed process that started them, even when it is killed -9.

vLLM runs its engine in child processes (`VLLM::EngineCore`, `VLLM::Worker`, a multiprocessing
resource tracker) and a local Ray cluster runs its GCS and raylet as children of the driver. When
the driver dies normally they are shut down; when it is killed with SIGKILL (by a user, the OOM
killer, a job scheduler that signals one pid) nothing runs in it any more, and they live on:
measured here, an engine and a worker at ~30 % CPU and ~1.4 GB between them, 46 s after the kill
and counting. On a GPU node they keep the GPU's memory.

vLLM starts those processes itself, so we cannot set `PR_SET_PDEATHSIG` in them. Instead, a small
watcher process (started in its own session, so a signal to the driver's process group does not
reach it first) polls the driver's process tree once a second and remembers every descendant;
when the driver is gone it sends SIGTERM to the remembered descendants, then SIGKILL to those
still alive 5 s later, and exits. It only ever signals processes it saw as descendants of the
driver (matched by pid AND creation time, so a reused pid is never hit). A driver that exits
normally stops the watcher on the way out.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time

import psutil

_WATCHER: subprocess.Popen | None = None
POLL_S = 1.0
GRACE_S = 5.0


def _watch(parent_pid: int) -> None:
    """The watcher's loop (runs in its own process)."""
    try:
        parent = psutil.Process(parent_pid)
        parent_created = parent.create_time()
    except psutil.NoSuchProcess:
        return
    seen: dict[int, float] = {}  # pid -> create_time
    while _still_running(parent, parent_created) and _remember_descendants(parent, seen):
        time.sleep(POLL_S)
    _end_remembered(seen)


def _still_running(parent: psutil.Process, created: float) -> bool:
    """The driver is alive: the same process (not a reused pid) and not a zombie."""
    try:
        return parent.is_running() and parent.create_time() == created and parent.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _remember_descendants(parent: psutil.Process, seen: dict[int, float]) -> bool:
    """Add the driver's descendants alive now to `seen` (pid -> create_time); False once it is gone."""
    try:
        for child in parent.children(recursive=True):
            if child.pid != os.getpid():
                try:
                    seen.setdefault(child.pid, child.create_time())
                except psutil.NoSuchProcess:
                    pass
    except psutil.NoSuchProcess:
        return False
    return True


def _end_remembered(seen: dict[int, float]) -> None:
    """SIGTERM to each remembered descendant that is still the same process, then SIGKILL to those
    still alive GRACE_S later."""
    victims = []
    for pid, created in seen.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created:
                victims.append(proc)
        except psutil.NoSuchProcess:
            continue
    for proc in victims:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, still = psutil.wait_procs(victims, timeout=GRACE_S)
    for proc in still:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def start_reaper() -> None:
    """Start the watcher for this process once (idempotent); it is stopped at normal exit."""
    global _WATCHER
    if _WATCHER is not None and _WATCHER.poll() is None:
        return
    _WATCHER = subprocess.Popen(
        [sys.executable, "-c", f"from nemo_taskseed.pipeline.reaper import _watch; _watch({os.getpid()})"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    atexit.register(stop_reaper)


def stop_reaper() -> None:
    # Normal exit: the children are shut down by their owners (engine close, ray.shutdown); the
    # watcher itself must not outlive us and reap what a successor process owns.
    if _WATCHER is not None and _WATCHER.poll() is None:
        _WATCHER.kill()
        _WATCHER.wait()
