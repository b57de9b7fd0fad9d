"""One framework-neutral description of a continued-pretraining run, built from config + plan.json.

Presets (`configs/recipes/<name>.yaml`) sit between the base defaults and the user's file:
base < preset < user file < key=value overrides. The resulting `TrainingSpec` is what both the
Megatron-Bridge recipe and the NeMo 2 recipe consume, and what `--dry-run` prints.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nemo_taskseed.config import ConfigError, base_config, load_config, resolve_config_path
from nemo_taskseed.paths import config_files, find_config
from nemo_taskseed.train.plan import BlendPlan, load_plan, train_iters_for

FRAMEWORKS = ("bridge", "nemo2")
DECAY_STYLES = ("cosine", "linear", "WSD", "constant", "inverse-square-root")


def available_recipes() -> list[str]:
    return sorted(p.stem for p in config_files("recipes"))


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None) -> DictConfig:
    """base < preset named by `train.recipe` < user file < overrides."""
    user_layered = load_config(path, overrides)  # validates the file and overrides
    recipe = user_layered.train.recipe
    preset_path = find_config(f"recipes/{recipe}", (".yaml",))
    if preset_path is None:
        raise ConfigError(f"unknown train.recipe {recipe!r}; presets: {', '.join(available_recipes())}")
    layers = [base_config(), OmegaConf.load(preset_path)]
    if path is not None:
        layers.append(OmegaConf.load(resolve_config_path(path)))
    if overrides:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
    return OmegaConf.merge(*layers)


@dataclass
class TrainingSpec:
    recipe: str
    framework: str
    bridge_recipe: str
    nemo2_recipe: str
    hf_model_id: str
    tokenizer: str
    plan_path: str
    seq_length: int
    total_tokens: int
    global_batch_size: int
    micro_batch_size: int
    train_iters: int
    data_prefixes: list[str]
    data_weights: list[float]
    output_dir: str
    checkpoint_dir: str
    pretrained_checkpoint: str
    lr: float
    min_lr: float
    warmup_iters: int
    decay_style: str
    weight_decay: float
    save_interval: int
    eval_interval: int
    eval_iters: int
    also_save_hf_checkpoint: bool
    tensor_parallel: int
    pipeline_parallel: int
    context_parallel: int
    sequence_parallel: bool
    precision: str
    nodes: int
    gpus_per_node: int
    extra_overrides: list[str] = field(default_factory=list)
    # What plan.json says the data was tokenized with; shown next to `tokenizer` so a mismatch
    # (which would train on wrong token ids) is visible in every dry run.
    plan_tokenizer: str | None = None

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def data_parallel(self) -> int:
        return self.world_size // (self.tensor_parallel * self.pipeline_parallel * self.context_parallel)

    @property
    def tokens_per_iter(self) -> int:
        return self.global_batch_size * self.seq_length

    def flat_data_path(self) -> list[str]:
        out: list[str] = []
        for weight, prefix in zip(self.data_weights, self.data_prefixes):
            out += [repr(float(weight)), prefix]
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(world_size=self.world_size, data_parallel=self.data_parallel, tokens_per_iter=self.tokens_per_iter)
        return d

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> TrainingSpec:
        d = json.loads(Path(path).read_text())
        for derived in ("world_size", "data_parallel", "tokens_per_iter"):
            d.pop(derived, None)
        return cls(**d)


def build_spec(cfg: DictConfig, plan: BlendPlan | None = None) -> TrainingSpec:
    """Resolve the run: token budget -> train_iters, warmup, parallelism checks, paths."""
    t, launch = cfg.train, cfg.launch
    if t.framework not in FRAMEWORKS:
        raise ConfigError(f"train.framework must be one of {FRAMEWORKS}, got {t.framework!r}")
    if plan is None:
        if not t.plan:
            raise ConfigError("train.plan is not set: pass --plan plan.json (written by `taskseed blend plan`)")
        plan = load_plan(t.plan)
    seq_length = int(t.seq_length or plan.seq_length)
    if seq_length != plan.seq_length:
        # The blend's documents were packed and its budget counted at the plan's length.
        raise ConfigError(f"train.seq_length={seq_length} differs from the plan's seq_length={plan.seq_length}")
    total_tokens = int(t.total_tokens or plan.total_tokens)
    gbs, mbs = int(t.global_batch_size), int(t.micro_batch_size)
    train_iters = train_iters_for(total_tokens, gbs, seq_length)
    if t.decay_style not in DECAY_STYLES:
        raise ConfigError(f"train.decay_style must be one of {DECAY_STYLES}, got {t.decay_style!r}")
    if not 0 <= float(t.min_lr) <= float(t.lr):
        raise ConfigError(f"need 0 <= train.min_lr <= train.lr, got min_lr={t.min_lr} lr={t.lr}")
    warmup_iters = min(int(t.max_warmup_iters), math.ceil(float(t.warmup_fraction) * train_iters))
    nodes, gpus = int(launch.nodes), int(launch.gpus_per_node)
    model_parallel = int(t.tensor_parallel) * int(t.pipeline_parallel) * int(t.context_parallel)
    world = nodes * gpus
    if world % model_parallel:
        raise ConfigError(f"{nodes} nodes x {gpus} GPUs = {world} is not divisible by TP*PP*CP = {model_parallel}")
    data_parallel = world // model_parallel
    if gbs % (mbs * data_parallel):
        raise ConfigError(
            f"global_batch_size {gbs} must be a multiple of micro_batch_size x data-parallel size = {mbs} x {data_parallel}"
        )
    if not t.hf_model_id:
        raise ConfigError(f"train.hf_model_id is not set (preset {t.recipe!r} should set it)")
    output_dir = str(t.output_dir)
    return TrainingSpec(
        recipe=str(t.recipe),
        framework=str(t.framework),
        bridge_recipe=str(t.bridge_recipe),
        nemo2_recipe=str(t.nemo2_recipe),
        hf_model_id=str(t.hf_model_id),
        tokenizer=str(t.tokenizer or t.hf_model_id),
        plan_path=str(plan.path),
        seq_length=seq_length,
        total_tokens=total_tokens,
        global_batch_size=gbs,
        micro_batch_size=mbs,
        train_iters=train_iters,
        data_prefixes=plan.prefixes,
        data_weights=plan.weights,
        output_dir=output_dir,
        checkpoint_dir=f"{output_dir}/checkpoints",
        pretrained_checkpoint=str(t.pretrained_checkpoint or f"{output_dir}/pretrained"),
        lr=float(t.lr),
        min_lr=float(t.min_lr),
        warmup_iters=warmup_iters,
        decay_style=str(t.decay_style),
        weight_decay=float(t.weight_decay),
        save_interval=int(t.save_interval),
        eval_interval=int(t.eval_interval),
        eval_iters=int(t.eval_iters),
        also_save_hf_checkpoint=bool(t.also_save_hf_checkpoint),
        tensor_parallel=int(t.tensor_parallel),
        pipeline_parallel=int(t.pipeline_parallel),
        context_parallel=int(t.context_parallel),
        sequence_parallel=bool(t.sequence_parallel),
        precision=str(t.precision),
        nodes=nodes,
        gpus_per_node=gpus,
        extra_overrides=[str(o) for o in t.extra_overrides],
        plan_tokenizer=plan.tokenizer_path,
    )
