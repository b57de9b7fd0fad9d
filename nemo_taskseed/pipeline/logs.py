"""Quiet terminal: third-party INFO logs go to a log file in the run folder; the terminal keeps warnings.

vLLM, Ray (Data), NeMo Curator (loguru) and the Python stack each log INFO to the terminal by
default, pages of it per run, and the progress bars and step summaries drown in it. Each has its
own switch, and several log from child processes (vLLM's engine core, Ray workers) that read
their configuration from the environment at start-up, so this must run before those libraries are
imported or start their processes: the CLI calls it first. `-v` skips it.

No library offers one switch for all of them (each keeps its own logging setup), hence this module.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

LOG_NAME = "taskseed.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_routed: Path | None = None


# Warnings that say nothing about the data (how Ray secures its local cluster, how Ray Data
# shortens an operator name in its progress line, which kernels vLLM picks on this platform):
# kept in the file, not shown on the terminal.
_NOISE = (
    "Token authentication is enabled for this Ray cluster",
    "Truncating long operator name",
    "Triton is installed, but doesn't include CPU backend",
)


class _NotNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_NOISE)


def _vllm_config(log_file: Path) -> dict:
    # vLLM's own dictConfig (VLLM_LOGGING_CONFIG_PATH), read by the main process and by the engine
    # core process it spawns: everything to the file, errors also to the terminal. vLLM's warnings
    # are about its platform and kernels (Triton missing, eager mode), not about the data; what it
    # refuses or truncates reaches the step summary through the request results.
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s vllm[%(process)d] %(name)s: %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(log_file), "formatter": "plain", "level": "INFO"},
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "plain",
                "level": "ERROR",
            },
        },
        "loggers": {"vllm": {"handlers": ["file", "console"], "level": "INFO", "propagate": False}},
    }


def _ray_data_config(log_file: Path) -> dict:
    # Ray Data's logger config (RAY_DATA_LOGGING_CONFIG): its per-operator progress lines go to the
    # file; warnings still reach the terminal.
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": _FORMAT}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(log_file), "formatter": "plain", "level": "INFO"},
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "level": "WARNING",
                "filters": ["not_noise"],
            },
        },
        "filters": {"not_noise": {"()": f"{__name__}._NotNoise"}},
        "loggers": {"ray.data": {"level": "INFO", "handlers": ["file", "console"], "propagate": False}},
    }


def route_third_party_logs(folder: str | Path) -> Path | None:
    """Send INFO logs of this process and of the processes it starts to `<folder>/taskseed.log`.

    Returns the log file (None when the folder cannot be written). Called again (a step inside
    `taskseed run`), it keeps the first file.
    """
    global _routed
    if _routed is not None:
        return _routed
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        log_file = (folder / LOG_NAME).resolve()
        log_file.touch()
    except OSError as exc:
        # A folder we cannot write (full disk, read-only): the step itself reports that with its
        # own clear error; logs stay on the terminal rather than fail before it.
        print(f"note: third-party logs stay on the terminal ({folder}: {exc.strerror or exc})", file=sys.stderr)
        return None
    # The logging configs the child processes read go to a temp folder, not the output folder
    # (an output folder holds only what its step publishes, plus the log).
    config_dir = Path(tempfile.mkdtemp(prefix="taskseed-logging-"))
    vllm_cfg = config_dir / "vllm.json"
    vllm_cfg.write_text(json.dumps(_vllm_config(log_file)))
    ray_data_cfg = config_dir / "ray_data.json"  # YAML is a superset of JSON: Ray Data reads it with yaml
    ray_data_cfg.write_text(json.dumps(_ray_data_config(log_file)))
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(vllm_cfg.resolve())
    os.environ["RAY_DATA_LOGGING_CONFIG"] = str(ray_data_cfg.resolve())
    # Ray workers' stdout/stderr (Curator's loguru INFO lines from every stage actor) stay in the
    # Ray session's log folder instead of being echoed to this terminal. A failing task still
    # raises its error in this process.
    os.environ["RAY_LOG_TO_DRIVER"] = "0"
    # loguru (Curator) in processes started from here: warnings only on their stderr.
    os.environ["LOGURU_LEVEL"] = "WARNING"
    # Progress bars redraw at most once a second (tqdm reads TQDM_* defaults from the
    # environment, in child processes too): a captured terminal then holds a few lines per bar.
    os.environ.setdefault("TQDM_MININTERVAL", "1")

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    to_file = logging.FileHandler(log_file)
    to_file.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(to_file)
    to_terminal = logging.StreamHandler(sys.stderr)
    to_terminal.setLevel(logging.WARNING)
    to_terminal.addFilter(_NotNoise())
    to_terminal.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(to_terminal)
    # Library deprecation chatter (FutureWarning, ...) is for developers: into the file only.
    logging.captureWarnings(True)
    py_warnings = logging.getLogger("py.warnings")
    py_warnings.propagate = False
    py_warnings.addHandler(to_file)

    # Ray's core logger ("Started a local Ray instance ...") gets its own stderr handler, and stops
    # propagating, when `ray` is imported: import it now, then keep its INFO for the file.
    try:
        import ray  # noqa: F401 - imported for the logger set-up it does at import
    except ImportError:
        pass
    else:
        ray_logger = logging.getLogger("ray")
        for handler in ray_logger.handlers:
            handler.setLevel(logging.WARNING)
            handler.addFilter(_NotNoise())
        ray_logger.addHandler(to_file)

    from loguru import logger

    from nemo_taskseed.compat import let_xenna_configure_loguru_first

    let_xenna_configure_loguru_first()
    logger.remove()
    logger.add(str(log_file), level="INFO", enqueue=False)
    logger.add(sys.stderr, level="WARNING", format="{level} {name}: {message}")
    _routed = log_file
    logging.getLogger(__name__).info("third-party INFO logs go here; Ray workers log under the Ray session folder")
    return log_file


@contextlib.contextmanager
def library_output_to_log():
    """While the block runs, what libraries write straight to stderr (transformers' and lm-eval's
    progress bars, a `git` child process lm-eval starts) goes to the routed log file, at the file
    descriptor so child processes follow. Nothing changes when logs are not routed (`-v`, or a
    test calling the CLI's main). Our own progress and summaries go to stdout meanwhile."""
    if _routed is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(_routed, "a", encoding="utf-8") as log, contextlib.redirect_stderr(log):
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            log.flush()
            os.dup2(saved, 2)
            os.close(saved)
