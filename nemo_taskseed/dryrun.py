"""`taskseed run CONFIG --dry-run`: resolve and validate a whole job, and say what it would use.

Every step's typed settings are built from the config exactly as the step builds them (so a bad
key or value fails here, not hours into a cluster job), then the plan is printed: steps in order,
their folders, seeds and shards, the models with their parallelism, and the GPUs they would hold.
No model is loaded, nothing is read from the hub and nothing is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_taskseed.config import to_container
from nemo_taskseed.errors import UserError
from nemo_taskseed.llm.backends import configured_gpus


@dataclass
class ModelUse:
    role: str  # generator, verifier, judge
    kind: str  # vllm | openai
    model: str | None
    tensor_parallel: int
    gpus_per_engine: float  # 0 for an OpenAI endpoint: its GPUs live behind the server

    def line(self) -> str:
        where = (
            f"vLLM, tensor parallel {self.tensor_parallel}, {self.gpus_per_engine:g} GPU(s) per engine on a CUDA node"
            if self.kind == "vllm"
            else "OpenAI-compatible endpoint (GPUs behind the server)"
        )
        model = self.model or "SmolLM2-135M-Instruct (model: null, the offline default)"
        return f"{self.role:<10} {model}: {where}"


@dataclass
class DryRun:
    steps: list[str]
    workdir: str
    seeds: int | None  # planned seed count, None when it depends on the catalog (no targets)
    generate_shards: int | None
    records: int | None  # generated records (seeds x n x variants), an upper bound
    models: list[ModelUse]
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"steps ({len(self.steps)}, each writes {self.workdir}/<step>/): {' -> '.join(self.steps)}"]
        if self.seeds is not None:
            out.append(f"seeds planned: {self.seeds:,} (seeds.targets)")
        if self.generate_shards is not None:
            out.append(f"generate shards: {self.generate_shards:,} (generate.shard_size)")
        if self.records is not None:
            out.append(f"generated records at most: {self.records:,} (seeds x sampling.n x enrich.variants)")
        out.append("models:")
        out.extend(f"  {m.line()}" for m in self.models)
        gpus = sum(m.gpus_per_engine for m in self.models)
        out.append(f"GPUs per engine set (one of each model): {gpus:g}")
        out.extend(f"note: {n}" for n in self.notes)
        return out


def _backend_use(role: str, section: dict[str, Any] | None, fallback: dict[str, Any]) -> ModelUse:
    section = dict(section or fallback)
    kind = str(section.get("kind", "vllm"))
    vllm = dict(section.get("vllm") or {})
    tp = int(vllm.get("tensor_parallel_size") or 1)
    # Not engine_gpus, which answers for this machine (0 without CUDA): a dry run plans the cluster.
    return ModelUse(role, kind, section.get("model"), tp, configured_gpus(section))


def _validate(cfg: Any, steps: list[str], errors: list[str]) -> None:
    """Build each step's settings the way the step does; collect what fails."""

    def check(what: str, build) -> None:
        try:
            build()
        except (UserError, ValueError, KeyError, TypeError) as exc:
            errors.append(f"{what}: {exc}")

    if "seeds" in steps:
        from nemo_taskseed.seeds.targets import Targets

        check("seeds.targets", lambda: Targets.from_config(to_container(cfg.seeds)))
    if "generate" in steps:
        from nemo_taskseed.generate.prompts import load_templates, prompts_dir
        from nemo_taskseed.generate.settings import EnrichmentSettings, GenerationSettings

        check("generate", lambda: GenerationSettings.from_config(cfg))
        check("enrich", lambda: EnrichmentSettings.from_config(cfg))
        check("generate.prompts_dir", lambda: load_templates(prompts_dir(cfg.generate.prompts_dir)))
    if "filter" in steps:
        from nemo_taskseed.filter.decontam.benchmarks import Benchmark
        from nemo_taskseed.filter.dedup.sharded import DedupSettings
        from nemo_taskseed.filter.semantic.check import SemanticSettings
        from nemo_taskseed.filter.semantic.dedup import SemanticDedupSettings
        from nemo_taskseed.filter.verify.sandbox import CodeSettings
        from nemo_taskseed.filter.verify.vote import VoteSettings

        check("filter.dedup", lambda: DedupSettings.from_config(to_container(cfg.filter.dedup)))
        check("filter.dedup.semantic", lambda: SemanticDedupSettings.from_config(cfg))
        check("filter.decontam.semantic", lambda: SemanticSettings.from_config(cfg))
        check("filter.verify.vote", lambda: VoteSettings.from_config(cfg))
        check("filter.verify.code", lambda: CodeSettings.from_config(cfg))
        for i, entry in enumerate(cfg.filter.decontam.benchmarks):
            check(f"filter.decontam.benchmarks[{i}]", lambda entry=entry: Benchmark.from_config(entry))
    if "blend" in steps:
        from nemo_taskseed.blend.settings import PlanSettings

        check("blend", lambda: PlanSettings.from_config(cfg))


def plan_dry_run(cfg: Any) -> DryRun:
    """What `taskseed run` would do with `cfg`; `errors` lists every setting that would fail."""
    from nemo_taskseed.run import STEPS

    steps = [str(s) for s in cfg.run.steps]
    errors = [f"run.steps: unknown step {s!r}; known: {', '.join(STEPS)}" for s in steps if s not in STEPS]
    _validate(cfg, [s for s in steps if s in STEPS], errors)
    targets = to_container(cfg.seeds.targets) or {}
    seeds = None
    if targets.get("knowledge") is not None or targets.get("reasoning") is not None:
        seeds = int(float(targets.get("knowledge") or 0) + float(targets.get("reasoning") or 0))
    n = int(cfg.generate.sampling.n)
    variants = len(list(cfg.enrich.variants)) if cfg.enrich.get("enabled", True) else 1
    generate = to_container(cfg.generate.backend)
    models = []
    if "generate" in steps:
        models.append(_backend_use("generator", generate, generate))
    verify = cfg.filter.verify
    notes = []
    if "filter" in steps and verify.enabled:
        panel = to_container(verify.panel) or []
        for member in panel or [to_container(verify.backend)]:
            models.append(_backend_use("verifier", member, generate))
        if not panel and verify.backend is None:
            notes.append("filter.verify.backend is null: the generator grades its own items (the summary warns)")
    judge = cfg.filter.decontam.semantic.judge
    if "filter" in steps and judge.enabled:
        models.append(_backend_use("judge", to_container(judge.backend), generate))
    if "filter" in steps and not verify.enabled:
        notes.append("filter.verify.enabled=false: answers would not be checked")
    return DryRun(
        steps=steps,
        workdir=str(Path(cfg.run.workdir)),
        seeds=seeds,
        generate_shards=math.ceil(seeds / int(cfg.generate.shard_size)) if seeds else None,
        records=seeds * n * variants if seeds else None,
        models=models,
        errors=errors,
        notes=notes,
    )
