"""Megatron-Bridge `on_checkpoint_save` hook: hand each saved checkpoint to evaluation.

Training must not stall on evaluation, so the hook only (rank 0) drops a request file into
`<checkpoints>/eval_queue/` for the eval watcher job and, if `TASKSEED_EVAL_SUBMIT` is set,
runs that command (e.g. `sbatch launch/eval_one.sbatch {checkpoint} {step}`) to score it at once.
`request_eval()` is the plain-Python part, tested here; `make_bridge_eval_callback()` wraps it in
Bridge's `Callback` class (imports megatron.bridge, GPU env only).
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path


def request_eval(checkpoints_root: str | Path, step: int, submit_command: str | None = None) -> Path:
    """Write `eval_queue/iter_NNNNNNN.json` atomically; optionally run the submit command."""
    root = Path(checkpoints_root)
    checkpoint = root / f"iter_{step:07d}"  # Bridge/Megatron checkpoint folder naming
    queue = root / "eval_queue"
    queue.mkdir(parents=True, exist_ok=True)
    request = queue / f"{checkpoint.name}.json"
    partial = request.with_suffix(".json.tmp")
    partial.write_text(json.dumps({"checkpoint": str(checkpoint), "step": int(step)}) + "\n")
    partial.replace(request)  # the watcher never sees a half-written request
    if submit_command:
        command = submit_command.format(checkpoint=shlex.quote(str(checkpoint)), step=int(step))
        subprocess.Popen(command, shell=True, start_new_session=True)  # fire and forget
    return request


def make_bridge_eval_callback(checkpoints_root: str, submit_command: str | None = None):
    from megatron.bridge.training.callbacks import Callback

    class EvalOnCheckpointSave(Callback):
        def on_checkpoint_save(self, context) -> None:
            import torch.distributed as dist

            if dist.is_initialized() and dist.get_rank() != 0:
                return
            request_eval(checkpoints_root, int(context.state.train_state.step), submit_command)

    return EvalOnCheckpointSave()
