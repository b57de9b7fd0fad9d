"""Curator executors by name, configured for what works on a small CPU box and on a cluster."""

from __future__ import annotations

from typing import Any

from nemo_curator.backends.base import BaseExecutor

from nemo_taskseed.errors import UserError


class InProcessExecutor(BaseExecutor):
    """Runs a Curator pipeline in this process, a few initial tasks (shards) at a time through every stage.

    Curator ships only distributed executors, whose fixed start-up (~20 s for a local Ray here)
    dwarfs small jobs, and which make a failing stage hard to step through. The stages and the
    `Pipeline` are the same; only the scheduling differs, so results match RayDataExecutor's.
    Depth-first: a group of shards goes through all stages before the next group starts, so memory
    holds one group, as on a Ray worker, never the whole input. A group is as many shards as the
    largest stage `batch_size` (a model stage that streams several shards' requests through one
    engine); a stage with a smaller one gets the group in slices of its size, as Ray Data would.
    """

    def __init__(self, config: dict[str, Any] | None = None, progress: str | None = None):
        super().__init__(config)
        self.progress = progress

    @staticmethod
    def _run_stage(stage, tasks: list) -> list:
        size = max(1, int(stage.batch_size or 1))
        out: list = []
        for start in range(0, len(tasks), size):
            part = tasks[start : start + size]
            if stage.supports_batch_processing():
                outputs = stage.process_batch(part)
            else:
                outputs = [stage.process(t) for t in part]
            for result in outputs:
                if result is not None:
                    out.extend(result if isinstance(result, list) else [result])
        return out

    def execute(self, stages, initial_tasks=None):
        from tqdm import tqdm

        tasks = list(initial_tasks or [])
        group = max([1, *(int(s.batch_size or 1) for s in stages)])
        for stage in stages:
            stage.setup_on_node(None, None)
            stage.setup(None)
        results = []
        try:
            with tqdm(
                total=len(tasks),
                desc=self.progress or "shards",
                unit="shard",
                disable=self.progress is None,
                dynamic_ncols=True,
            ) as bar:
                for start in range(0, len(tasks), group):
                    current = tasks[start : start + group]
                    for stage in stages:
                        current = self._run_stage(stage, current)
                    results.extend(current)
                    bar.update(min(group, len(tasks) - start))
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
        from ray.data import DataContext

        # A shard is a long task (a model stage's can take minutes). Ray Data's default queues two
        # per actor: the worker that is ready first takes a second shard while another worker sits
        # idle (and at the tail of a run one worker holds two shards). One at a time spreads shards
        # over every worker; the hand-over between two shards costs milliseconds.
        DataContext.get_current().max_tasks_in_flight_per_actor = 1
        return RayDataExecutor(config=config)
    if name == "xenna":
        from nemo_curator.backends.xenna import XennaExecutor

        return XennaExecutor(config={"execution_mode": "batch", **(config or {})})
    if name == "inline":
        return InProcessExecutor(config=config, progress=progress)
    raise UserError(f"unknown executor {name!r}: use ray_data, xenna or inline (run.executor)")
