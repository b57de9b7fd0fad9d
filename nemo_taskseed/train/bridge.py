"""Megatron-Bridge continued pretraining: our spec -> settings on a Bridge `ConfigContainer`.

Split at the import boundary on purpose. `bridge_settings()` is plain Python (dotted
`ConfigContainer` attribute paths -> values) and is tested here. `build_config_container()`
imports `megatron.bridge`, which needs Python 3.12 and a CUDA Transformer Engine build
(`megatron/bridge/peft/lora_layers.py` imports `transformer_engine.pytorch` unguarded), so it
only runs on a GPU node / in an NGC NeMo container. Field names below were checked against the
megatron-bridge 0.6.2 sources (training/config.py, recipes/common.py).
"""

from __future__ import annotations

import importlib
from typing import Any

from nemo_taskseed.train.spec import TrainingSpec


def bridge_settings(spec: TrainingSpec) -> dict[str, Any]:
    """Every value our recipe sets on the Bridge recipe's `ConfigContainer`, by attribute path."""
    settings: dict[str, Any] = {
        # Data: the blend from plan.json, in Megatron `--data-path` form ("w1 prefix1 w2 prefix2").
        # Bridge's GPTDatasetConfig.finalize() turns data_path into `blend`.
        "dataset.blend": None,
        "dataset.data_path": spec.flat_data_path(),
        "dataset.seq_length": spec.seq_length,
        "dataset.split": "99,1,0",
        "model.seq_length": spec.seq_length,
        # Tokenizer: the one the blend was tokenized with (recipes default to NullTokenizer).
        "tokenizer.tokenizer_type": "HuggingFaceTokenizer",
        "tokenizer.tokenizer_model": spec.tokenizer,
        # Budget.
        "train.train_iters": spec.train_iters,
        "train.global_batch_size": spec.global_batch_size,
        "train.micro_batch_size": spec.micro_batch_size,
        # Continuation schedule: short warmup, decay over the whole run to a floor.
        "optimizer.lr": spec.lr,
        "optimizer.min_lr": spec.min_lr,
        "optimizer.weight_decay": spec.weight_decay,
        "scheduler.lr_warmup_iters": spec.warmup_iters,
        "scheduler.lr_decay_iters": spec.train_iters,
        "scheduler.lr_decay_style": spec.decay_style,
        # Start from the pretrained weights, not from the recipe's random init; a restart after
        # preemption resumes from checkpoint.load (our own checkpoints) instead.
        "checkpoint.pretrained_checkpoint": spec.pretrained_checkpoint,
        "checkpoint.save": spec.checkpoint_dir,
        "checkpoint.load": spec.checkpoint_dir,
        "checkpoint.save_interval": spec.save_interval,
        # iter_NNNNNNN/hf next to each checkpoint: what the eval watcher scores.
        "checkpoint.also_save_hf_checkpoint": spec.also_save_hf_checkpoint,
        "checkpoint.hf_source_path": spec.hf_model_id,
        "validation.eval_interval": spec.eval_interval,
        "validation.eval_iters": spec.eval_iters,
        "logger.tensorboard_dir": f"{spec.output_dir}/tb_logs",
        "model.tensor_model_parallel_size": spec.tensor_parallel,
        "model.pipeline_model_parallel_size": spec.pipeline_parallel,
        "model.context_parallel_size": spec.context_parallel,
        "model.sequence_parallel": spec.sequence_parallel,
        "mixed_precision": spec.precision,
    }
    return settings


def bridge_recipe_function(spec: TrainingSpec):
    """Import `module:function` named by the preset (needs megatron.bridge)."""
    module_name, _, function_name = spec.bridge_recipe.partition(":")
    return getattr(importlib.import_module(module_name), function_name)


def set_by_path(root: Any, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    target = root
    for name in parents:
        target = getattr(target, name)
    if not hasattr(target, leaf):
        # A typo or a Bridge rename must fail loudly, not add a silently ignored attribute.
        raise AttributeError(f"{type(target).__name__} has no field {leaf!r} (setting {dotted})")
    setattr(target, leaf, value)


def build_config_container(spec: TrainingSpec):
    """The real Bridge `ConfigContainer` (GPU node / NeMo container only, see module doc)."""
    cfg = bridge_recipe_function(spec)()
    for dotted, value in bridge_settings(spec).items():
        set_by_path(cfg, dotted, value)
    if spec.extra_overrides:
        # Bridge's own CLI override path (Hydra syntax), as its example scripts use it.
        from megatron.bridge.training.utils.omegaconf_utils import (
            apply_overrides,
            create_omegaconf_dict_config,
            parse_hydra_overrides,
        )
        from omegaconf import OmegaConf

        omega, excluded = create_omegaconf_dict_config(cfg)
        omega = parse_hydra_overrides(omega, list(spec.extra_overrides))
        apply_overrides(cfg, OmegaConf.to_container(omega, resolve=True), excluded)
    return cfg
