"""Curator executors by name, configured for what works on a small CPU box and on a cluster."""

from __future__ import annotations

from typing import Any

from nemo_curator.backends.base import BaseExecutor

from nemo_taskseed.errors import UserError


class InProcessExecutor(BaseExecutor):
    """Runs a Curator pipeline in this process, one initial task (shard) at a time through every stage.

    Curator ships only distributed executors, whose fixed start-up (~20 s for a local Ray here)
    dwarfs small jobs, and which make a failing stage hard to step through. The stages and the
    `Pipeline` are the same; only the scheduling differs, so results match RayDataExecutor's.
    Depth-first: a shard goes through all stages before the next starts, so memory holds one
    shard, as on a Ray worker, never the whole input.
    """

    def __init__(self, config: dict[str, Any] | None = None, progress: str | None = None):
        super().__init__(config)
        self.progress = progress

    def execute(self, stages, initial_tasks=None):
        from tqdm import tqdm

        tasks = list(initial_tasks or [])
        for stage in stages:
            stage.setup_on_node(None, None)
            stage.setup(None)
        results = []
        try:
            for task in tqdm(tasks, desc=self.progress or "shards", unit="shard", disable=self.progress is None,
                             dynamic_ncols=True):
                current = [task]
                for stage in stages:
                    if stage.supports_batch_processing():
                        outputs = stage.process_batch(current)
                    else:
                        outputs = [stage.process(t) for t in current]
                    current = []
                    for out in outputs:
                        if out is not None:
                            current.extend(out if isinstance(out, list) else [out])
                results.extend(current)
        finally:
            for stage in stages:
                stage.teardown()
        return results


def make_executor(name: str = "ray_data", config: dict[str, Any] | None = None, progress: str | None = None):
    """`ray_data` (default; starts a local Ray if none is running), `xenna`, or `inline`.

    Xenna's default streaming mode fails on 2-core machines ("not enough CPU resources"), so it is
    forced to batch mode unless the caller says otherwise.
    """
    if name == "ray_data":
        from nemo_curator.backends.ray_data import RayDataExecutor

        return RayDataExecutor(config=config)
    if name == "xenna":
        from nemo_curator.backends.xenna import XennaExecutor

        return XennaExecutor(config={"execution_mode": "batch", **(config or {})})
    if name == "inline":
        return InProcessExecutor(config=config, progress=progress)
    raise UserError(f"unknown executor {name!r}: use ray_data, xenna or inline (run.executor)")
