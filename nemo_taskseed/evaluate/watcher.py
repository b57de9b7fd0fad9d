"""Find checkpoints that are ready and not yet scored; score them; repeat.

Checkpoint layouts understood:
- Megatron-Bridge: `<checkpoints>/iter_NNNNNNN/` with the HF export in `iter_NNNNNNN/hf/`
  (`checkpoint.also_save_hf_checkpoint=True`, set by our recipe). The export is what lm-eval loads.
- NeMo 2: `<checkpoints>/**/checkpoints/*step=N*/` with an HF export in `.../hf/` (write it with
  `llm.export_ckpt(..., target="hf")` in the eval job; not done automatically here).
- Requests dropped by the training hook in `<checkpoints>/eval_queue/*.json` ({"checkpoint", "step"}).

A checkpoint is ready once its `hf/config.json` and a weights file exist. What was already scored
is read back from the results JSONL itself, so the watcher is restartable and idempotent.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from nemo_taskseed.evaluate.runner import evaluate_model, read_rows

_BRIDGE_ITER = re.compile(r"^iter_(\d+)$")
_NEMO2_STEP = re.compile(r"step=(\d+)")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt")


@dataclass(frozen=True)
class Checkpoint:
    path: Path  # the training checkpoint folder
    step: int
    model_dir: Path  # the HF folder lm-eval loads

    @property
    def label(self) -> str:
        return f"step_{self.step}"


def hf_ready(folder: Path) -> bool:
    """An HF folder lm-eval can load: its config and a weights file are written."""
    return (folder / "config.json").is_file() and any(any(folder.glob(p)) for p in WEIGHT_PATTERNS)


def find_checkpoints(root: str | Path, queue_dir: str | Path | None = None) -> list[Checkpoint]:
    root = Path(root).absolute()
    found: dict[Path, Checkpoint] = {}
    if root.is_dir():
        for child in root.iterdir():
            m = _BRIDGE_ITER.match(child.name)
            if m and child.is_dir() and hf_ready(child / "hf"):
                found[child] = Checkpoint(child, int(m.group(1)), child / "hf")
        for hf_dir in root.glob("**/checkpoints/*step=*/hf"):
            m = _NEMO2_STEP.search(hf_dir.parent.name)
            if m and hf_ready(hf_dir):
                found[hf_dir.parent] = Checkpoint(hf_dir.parent, int(m.group(1)), hf_dir)
    queue = Path(queue_dir) if queue_dir else root / "eval_queue"
    if queue.is_dir():
        for request in sorted(queue.glob("*.json")):
            try:
                data = json.loads(request.read_text())
                ckpt = Path(data["checkpoint"]).absolute()
                step = int(data["step"])
            except (ValueError, KeyError, OSError):
                continue  # a request still being written; next poll
            model_dir = ckpt / "hf" if hf_ready(ckpt / "hf") else ckpt
            if hf_ready(model_dir):
                found.setdefault(ckpt, Checkpoint(ckpt, step, model_dir))
    return sorted(found.values(), key=lambda c: c.step)


def scored_checkpoints(results_path: str | Path) -> set[str]:
    return {row["checkpoint"] for row in read_rows(results_path)}


def pending_checkpoints(root, results_path, queue_dir=None) -> list[Checkpoint]:
    done = scored_checkpoints(results_path)
    return [c for c in find_checkpoints(root, queue_dir) if str(c.path) not in done]


def score_baseline(baseline_dir: str | Path, eval_cfg: DictConfig, results_path: str | Path) -> list[dict]:
    """The starting model as step 0, once per results file."""
    if str(Path(baseline_dir).absolute()) in scored_checkpoints(results_path):
        return []
    return evaluate_model(baseline_dir, eval_cfg, results_path, label="baseline", step=0, checkpoint=str(baseline_dir))


def watch(
    checkpoints_root: str | Path,
    eval_cfg: DictConfig,
    results_path: str | Path,
    *,
    baseline: str | Path | None = None,
    once: bool = False,
    poll_seconds: float = 300,
    max_polls: int | None = None,
    log=print,
) -> list[Checkpoint]:
    """Score the baseline (if given) and every new checkpoint; with `once`, stop after one pass."""
    scored: list[Checkpoint] = []
    if baseline:
        if score_baseline(baseline, eval_cfg, results_path):
            log(f"scored baseline {baseline}")
    polls = 0
    while True:
        for ckpt in pending_checkpoints(checkpoints_root, results_path, eval_cfg.get("queue_dir")):
            log(f"scoring {ckpt.path} (step {ckpt.step})")
            evaluate_model(
                ckpt.model_dir, eval_cfg, results_path, label=ckpt.label, step=ckpt.step, checkpoint=str(ckpt.path)
            )
            scored.append(ckpt)
        polls += 1
        if once or (max_polls is not None and polls >= max_polls):
            return scored
        time.sleep(poll_seconds)
