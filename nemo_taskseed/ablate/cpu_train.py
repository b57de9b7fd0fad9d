"""A real toy continuation run on CPU: a tiny model trained for a few dozen steps on one arm's plan.

Data: megatron-core's own path. `BlendedMegatronDatasetBuilder` + `GPTDataset` over the plan's
`data_paths` (`nemo_taskseed.blend.verify.build_megatron_blend`), read in order as Megatron's
pretraining sampler reads it: step k (1-based) takes samples [(k-1)*mbs, k*mbs), so a resumed run
sees exactly the samples the uninterrupted one would have.

Model: megatron-core's GPTModel fails on CPU because megatron-core 0.16.1 puts tensors on
`torch.cuda.current_device()` unconditionally ("AssertionError: Torch not compiled with CUDA
enabled"): `model_parallel_cuda_manual_seed` (tensor_parallel/random.py:235,
`torch.cuda.get_rng_state()`), the RoPE forward (models/common/embeddings/rotary_pos_embedding.py:162,
`self.inv_freq.to(device=torch.cuda.current_device())`), the local-spec attention's scratch buffer
(utils.py:631 `GlobalMemoryBuffer.get_tensor`, reached from dot_product_attention.py:189, also with
learned absolute positions), its DistributedDataParallel (distributed/param_and_grad_buffer.py:806)
and so its optimizer (`get_megatron_optimizer` needs the DDP-wrapped chunks' `ddp_config`). The
model step here is plain PyTorch: a tiny `transformers.LlamaForCausalLM` from scratch, trained on
each sample's `tokens`/`labels`/`loss_mask` with AdamW, saved with `save_pretrained` plus the
tokenizer as `<out_dir>/iter_NNNNNNN/hf`, the layout the eval watcher scores.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nemo_taskseed.errors import UserError
from nemo_taskseed.evaluate.watcher import hf_ready

__all__ = ["CpuTrainSettings", "checkpoint_dir", "read_train_log", "train_on_plan"]

SETTINGS_FILE = "cpu_train.json"
LOG_FILE = "train_log.jsonl"
STATE_FILE = "train_state.pt"


@dataclass
class CpuTrainSettings:
    """`ablate.local` (configs/base/ablate.yaml holds the defaults)."""

    steps: int
    micro_batch_size: int
    seq_length: int | None  # None: the plan's
    lr: float
    min_lr: float
    warmup: int
    weight_decay: float
    clip_grad: float
    save_interval: int
    seed: int
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    ffn_hidden_size: int

    @classmethod
    def from_config(cls, cfg, **overrides) -> CpuTrainSettings:
        """From the full config or its `ablate.local` section; `overrides` replace fields."""
        from nemo_taskseed.config import section_settings

        return cls(**{**section_settings(cls, cfg, "ablate.local"), **overrides})

    def validate(self) -> None:
        for name in ("steps", "micro_batch_size", "save_interval", "num_layers", "hidden_size", "num_attention_heads"):
            if int(getattr(self, name)) <= 0:
                raise UserError(f"cpu_train.{name} must be positive, got {getattr(self, name)!r}")
        if self.hidden_size % self.num_attention_heads:
            raise UserError(
                f"cpu_train.hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}"
            )

    def save_steps(self) -> list[int]:
        """Checkpointed steps: every save_interval, and always the last."""
        return sorted({*range(self.save_interval, self.steps + 1, self.save_interval), self.steps})


def checkpoint_dir(out_dir: str | Path, step: int) -> Path:
    """Megatron-Bridge's folder name for a step; the HF export the watcher loads is its `hf/`."""
    return Path(out_dir) / f"iter_{step:07d}"


def read_train_log(out_dir: str | Path) -> list[dict]:
    """One row per step: loss, lr, seconds, and samples drawn from each dataset (plan order)."""
    path = Path(out_dir) / LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def train_on_plan(
    plan: dict,
    out_dir: str | Path,
    settings: CpuTrainSettings,
    tokenizer_dir: str | Path | None = None,
) -> list[Path]:
    """Train (or resume) on the plan's blend; returns the `iter_NNNNNNN/hf` folders of the saved steps.

    `tokenizer_dir`: the tokenizer the data was tokenized with (default: the plan's, as the
    tokenize manifest recorded it). A run whose last step is already saved returns at once.
    """
    settings.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = _plan_for(plan, settings)
    tokenizer_dir = Path(tokenizer_dir or _plan_tokenizer(plan))
    _check_same_run(out_dir, settings, plan)

    start = _latest_resumable(out_dir, settings.steps)
    if not hf_ready(checkpoint_dir(out_dir, settings.steps) / "hf"):
        _train(plan, out_dir, settings, tokenizer_dir, start)
    return [
        checkpoint_dir(out_dir, s) / "hf" for s in settings.save_steps() if hf_ready(checkpoint_dir(out_dir, s) / "hf")
    ]


# --- the run's identity -------------------------------------------------------------------------


def _plan_for(plan: dict, settings: CpuTrainSettings) -> dict:
    pairs = plan["data_paths"]
    if pairs and not isinstance(pairs[0], list | tuple):  # flat [w1, p1, w2, p2, ...] as Megatron's --data-path
        pairs = [[pairs[i], pairs[i + 1]] for i in range(0, len(pairs), 2)]
    seq_length = int(settings.seq_length or plan["seq_length"])
    return {**plan, "data_paths": [[float(w), str(p)] for w, p in pairs], "seq_length": seq_length}


def _plan_tokenizer(plan: dict) -> str:
    tokenizer = plan.get("tokenizer")
    path = tokenizer.get("path") if isinstance(tokenizer, dict) else tokenizer
    if not path:
        raise UserError("the plan records no tokenizer (plan.tokenizer.path): pass tokenizer_dir")
    return str(path)


def _dataset_names(plan: dict) -> list[str]:
    entries = plan.get("entries") or []
    if len(entries) == len(plan["data_paths"]):
        return [str(e.get("name") or p) for e, (_, p) in zip(entries, plan["data_paths"])]
    return [Path(p).name for _, p in plan["data_paths"]]


def _check_same_run(out_dir: Path, settings: CpuTrainSettings, plan: dict) -> None:
    """Resuming under other settings or another blend would silently mix two runs: refuse it."""
    identity = {
        "settings": asdict(settings),
        "seq_length": plan["seq_length"],
        "data_paths": plan["data_paths"],
        "names": _dataset_names(plan),
    }
    path = out_dir / SETTINGS_FILE
    if path.is_file():
        recorded = json.loads(path.read_text())
        for key in ("settings", "seq_length", "data_paths"):
            if recorded.get(key) != json.loads(json.dumps(identity[key])):
                raise UserError(f"{path}: {out_dir} holds a run with other {key}; use a fresh out_dir to start over")
    else:
        path.write_text(json.dumps(identity, indent=1) + "\n")


def _latest_resumable(out_dir: Path, steps: int) -> int:
    done = [
        int(child.name[5:])
        for child in out_dir.glob("iter_*")
        if child.name[5:].isdigit() and hf_ready(child / "hf") and (child / STATE_FILE).is_file()
    ]
    return max((s for s in done if s <= steps), default=0)


# --- training -----------------------------------------------------------------------------------


def _model(settings: CpuTrainSettings, tokenizer, seq_length: int, resume_hf: Path | None):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if resume_hf is not None:
        return LlamaForCausalLM.from_pretrained(resume_hf, dtype=torch.float32)
    torch.manual_seed(settings.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.ffn_hidden_size,
        num_hidden_layers=settings.num_layers,
        num_attention_heads=settings.num_attention_heads,
        num_key_value_heads=settings.num_attention_heads,
        # lm-eval's hf backend truncates prompts to this; RoPE is not bound to the training length.
        max_position_embeddings=max(seq_length, 2048),
        tie_word_embeddings=True,  # the 49k-row embedding dominates a model this small: store it once
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).float()


def _optimizer(model, settings: CpuTrainSettings):
    import torch

    def lr_factor(step: int) -> float:  # linear warmup, then cosine down to min_lr (Megatron's default shape)
        if step < settings.warmup:
            return (step + 1) / settings.warmup
        progress = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
        floor = settings.min_lr / settings.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def _batch(dataset, step: int, settings: CpuTrainSettings, n_datasets: int):
    import torch

    first = (step - 1) * settings.micro_batch_size
    samples = [dataset[i] for i in range(first, first + settings.micro_batch_size)]
    counts = [0] * n_datasets
    for sample in samples:
        counts[int(sample.get("dataset_id", 0))] += 1  # a single-prefix plan builds a bare GPTDataset
    batch = {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in ("tokens", "labels", "loss_mask")}
    return batch, counts


def _loss(model, batch):
    import torch

    logits = model(input_ids=batch["tokens"]).logits.float()
    per_token = torch.nn.functional.cross_entropy(
        logits.view(-1, logits.size(-1)), batch["labels"].view(-1), reduction="none"
    )
    mask = batch["loss_mask"].view(-1)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def _save(out_dir: Path, step: int, model, tokenizer, optimizer, scheduler) -> Path:
    import torch

    final = checkpoint_dir(out_dir, step)
    # Written aside and renamed: the watcher polls for hf/config.json + weights and must never
    # score a half-written folder.
    tmp = final.with_name(final.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "hf")
    tokenizer.save_pretrained(tmp / "hf")
    torch.save(
        {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / STATE_FILE
    )
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final / "hf"


def _resume_log(out_dir: Path, start: int):
    rows = [r for r in read_train_log(out_dir) if r["step"] <= start]
    path = out_dir / LOG_FILE
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return open(path, "a")  # noqa: SIM115 - held open for the whole run, closed by the caller


def _train(plan: dict, out_dir: Path, settings: CpuTrainSettings, tokenizer_dir: Path, start: int) -> None:
    import torch
    from transformers import AutoTokenizer

    from nemo_taskseed.blend.verify import build_megatron_blend

    cache = out_dir / "megatron_cache"  # kept: a resumed run rebuilds the same indices in well under a second
    cache.mkdir(exist_ok=True)
    dataset = build_megatron_blend(
        plan, str(tokenizer_dir), settings.steps * settings.micro_batch_size, seed=settings.seed, cache_dir=cache
    )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    resume_hf = checkpoint_dir(out_dir, start) / "hf" if start else None
    model = _model(settings, tokenizer, int(plan["seq_length"]), resume_hf)
    optimizer, scheduler = _optimizer(model, settings)
    if start:
        state = torch.load(checkpoint_dir(out_dir, start) / STATE_FILE, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    vocab = model.config.vocab_size
    saves = set(settings.save_steps())
    n_datasets = len(plan["data_paths"])
    model.train()
    with _resume_log(out_dir, start) as log:
        for step in range(start + 1, settings.steps + 1):
            started = time.perf_counter()
            batch, counts = _batch(dataset, step, settings, n_datasets)
            if int(batch["tokens"].max()) >= vocab:
                raise UserError(
                    f"token id {int(batch['tokens'].max())} >= vocab {vocab}: {tokenizer_dir} is not the data's tokenizer"
                )
            loss = _loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_grad)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            row = {"step": step, "loss": loss.item(), "lr": lr, "seconds": round(time.perf_counter() - started, 4)}
            log.write(json.dumps({**row, "samples_per_dataset": counts}) + "\n")
            log.flush()
            if step in saves:
                _save(out_dir, step, model, tokenizer, optimizer, scheduler)
