"""Curator executors by name, configured for what works on a small CPU box and on a cluster."""

from __future__ import annotations

from typing import Any

from nemo_taskseed.errors import UserError


def make_executor(name: str = "ray_data", config: dict[str, Any] | None = None):
    """`ray_data` (default; starts a local Ray if none is running) or `xenna`.

    Xenna's default streaming mode fails on 2-core machines ("not enough CPU resources"), so it is
    forced to batch mode unless the caller says otherwise.
    """
    if name == "ray_data":
        from nemo_curator.backends.ray_data import RayDataExecutor

        return RayDataExecutor(config=config)
    if name == "xenna":
        from nemo_curator.backends.xenna import XennaExecutor

        return XennaExecutor(config={"execution_mode": "batch", **(config or {})})
    raise UserError(f"unknown executor {name!r}: use ray_data or xenna (run.executor)")
