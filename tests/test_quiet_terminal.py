"""Quiet terminal: third-party INFO goes to <folder>/taskseed.log, warnings still reach the terminal.

Runs in a fresh interpreter, as a real `taskseed` command does: the loggers are the real ones of
vLLM, NeMo Curator (loguru, which cosmos-xenna reconfigures at import) and Ray.
"""

from __future__ import annotations

import subprocess
import sys

PROBE = r"""
import logging, sys
from nemo_taskseed.pipeline.logs import route_third_party_logs
route_third_party_logs(sys.argv[1])
import nemo_curator.pipeline  # imports cosmos-xenna, which takes over loguru
from loguru import logger
from vllm.logger import _configure_vllm_root_logger, init_logger
_configure_vllm_root_logger()  # what an engine does when it starts (env: VLLM_LOGGING_CONFIG_PATH)
import ray  # what a Ray executor imports
logger.info("curator info line")
logger.warning("curator warning line")
init_logger("vllm.probe").info("vllm info line")
init_logger("vllm.probe").warning("vllm warning line")
init_logger("vllm.probe").error("vllm error line")
logging.getLogger("ray").info("ray info line")
logging.getLogger("ray").warning("Token authentication is enabled for this Ray cluster. noise")
"""


def test_info_goes_to_the_log_file_and_warnings_to_the_terminal(tmp_path):
    proc = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    terminal = proc.stdout + proc.stderr
    log = (tmp_path / "taskseed.log").read_text()
    for line in ("curator info line", "vllm info line", "ray info line"):
        assert line in log and line not in terminal, (line, terminal)
    for line in ("curator warning line", "vllm error line"):
        assert line in log and line in terminal, (line, terminal)
    # vLLM's warnings are about its platform (Triton, eager mode): the file only.
    assert "vllm warning line" in log and "vllm warning line" not in terminal
    # A warning that says nothing about the data stays in the file.
    assert "Token authentication" in log and "Token authentication" not in terminal
