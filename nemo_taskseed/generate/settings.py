"""`generate.*` and `enrich.*` as typed, checked settings (defaults live in
configs/base/generate.yaml and enrich.yaml, nowhere else)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nemo_taskseed.config import section_settings
from nemo_taskseed.errors import UserError
from nemo_taskseed.llm.requests import check_sampling, sampling_of
from nemo_taskseed.schema.generated import ENRICHED_VARIANTS, VARIANTS


@dataclass(frozen=True)
class GenerationSettings:
    """`generate.*` keys that shape what stage 3 asks and keeps."""

    sampling: dict[str, Any]
    structured_outputs: bool
    prompts_dir: str | None
    templates: dict[str, str]
    examples_per_prompt: int
    copy_similarity: float
    min_question_words: int
    check_language: bool
    shards_per_call: int

    @classmethod
    def from_config(cls, cfg: Any) -> GenerationSettings:
        values = section_settings(cls, cfg, "generate")
        if int(values["shards_per_call"]) < 1:
            raise UserError(f"generate.shards_per_call must be >= 1, got {values['shards_per_call']}")
        sampling = check_sampling(sampling_of(values["sampling"], "generate.sampling"), "generate.sampling")
        return cls(**{**values, "sampling": sampling, "templates": dict(values["templates"] or {})})


@dataclass(frozen=True)
class EnrichmentSettings:
    """`enrich.*` keys: the second pass and the variants written per item."""

    enabled: bool
    template: str
    sampling: dict[str, Any]
    variants: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: Any) -> EnrichmentSettings:
        values = section_settings(cls, cfg, "enrich")
        variants = tuple(values["variants"])
        bad = [v for v in variants if v not in VARIANTS]
        if bad:
            raise UserError(f"enrich.variants: unknown {bad}; choose from {', '.join(VARIANTS)}")
        if not values["enabled"] and any(v in ENRICHED_VARIANTS for v in variants):
            raise UserError("enrich.enabled is false but enrich.variants asks for reasoning/context")
        return cls(
            **{
                **values,
                "sampling": check_sampling(sampling_of(values["sampling"], "enrich.sampling"), "enrich.sampling"),
                "variants": variants,
            }
        )

    @property
    def needs_pass(self) -> bool:
        return self.enabled and any(v in ENRICHED_VARIANTS for v in self.variants)
