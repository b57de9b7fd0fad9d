"""The filter step's settings, parsed once at the step's boundary and passed down.

`FilterSettings.from_config(cfg, task_kinds)` reads the `filter` section (configs/base/filter.yaml
plus the run's overrides) and builds every typed settings object the checks use; a bad value fails
here, naming its key, before any shard runs. Nothing below the step reads the configuration
again: stages, the resolve phase and the summary get what they need from this object.
`raw` keeps the section as given: shard fingerprints and the report are functions of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nemo_taskseed.config import section_settings, to_container
from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.dedup.sharded import DedupSettings
from nemo_taskseed.filter.quality.explanation import ExplanationSettings
from nemo_taskseed.filter.semantic.check import SemanticSettings
from nemo_taskseed.filter.semantic.dedup import SemanticDedupSettings
from nemo_taskseed.filter.verify import CodeSettings, VoteSettings


def decontam_benchmarks(dc: dict[str, Any]) -> list[dict[str, Any]]:
    """`benchmarks` plus `extra_benchmarks` (by name; an extra one replaces a same-named one)."""
    merged = {str(b["name"]): dict(b) for b in dc.get("benchmarks") or []}
    for b in dc.get("extra_benchmarks") or []:
        merged[str(b["name"])] = dict(b)
    return list(merged.values())


def default_benchmark_names() -> list[str]:
    """The benchmarks configs/base/filter.yaml checks (what a replaced list leaves out)."""
    from nemo_taskseed.config import base_config

    return [str(b["name"]) for b in to_container(base_config())["filter"]["decontam"]["benchmarks"]]


def sub_section(fcfg: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    """The sub-section `dotted` (`quality.explanation`) of the `filter` section; None when absent."""
    data: Any = fcfg
    for key in dotted.split("."):
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else None


def _check_settings(fcfg: dict[str, Any]) -> dict[str, Any]:
    """Every registered check's typed settings that declares a parser, from its section."""
    from nemo_taskseed.filter.checks import all_checks

    out = {}
    for check in all_checks():
        if check.settings is None:
            continue
        section = sub_section(fcfg, check.section)
        if section is None:
            raise UserError(
                f"filter.{check.section}: missing (the {check.name} check's settings; configs/base sets it)"
            )
        out[check.name] = check.settings(section)
    return out


def _shard_bytes(fcfg: dict[str, Any]) -> int:
    value = section_settings(None, fcfg, "filter", ["shard_bytes"])["shard_bytes"]
    if not isinstance(value, int) or value < 0:
        raise UserError(f"filter.shard_bytes must be an integer >= 0 (0: one shard per file), got {value!r}")
    return value


def step_executor(full: dict) -> str:
    """filter.executor, or run.executor where it says inherit (both set in configs/base)."""
    executor = section_settings(None, full, "filter", ["executor"])["executor"]
    return section_settings(None, full, "run", ["executor"])["executor"] if executor == "inherit" else executor


@dataclass(frozen=True)
class FilterSettings:
    raw: dict[str, Any]  # the `filter` section as configured
    executor: str  # for the per-shard pipelines: filter.executor, or run.executor where it says inherit
    shard_bytes: int  # an input file larger than this is cut into shards of about this size
    verify_executor: str
    task_kinds: dict[str, str]  # task -> the catalog's verifier kind (from the seeds' summary)
    families: dict[str, str]  # filter.verify.families
    backend_config: dict[str, Any] | None  # the verifier: filter.verify.backend, else generate.backend
    dedup: DedupSettings
    explanation: ExplanationSettings
    semantic: SemanticSettings | None  # filter.decontam.semantic (None: decontamination off)
    semantic_dedup: SemanticDedupSettings | None
    vote: VoteSettings | None  # None: verification off
    code: CodeSettings | None
    default_benchmarks: list[str] = field(default_factory=list)
    # check name -> its typed settings, for checks declared with a `settings` parser (filter/checks.py)
    check_settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Any, task_kinds: dict[str, str] | None = None) -> FilterSettings:
        full = to_container(cfg)
        fcfg = full["filter"]
        executor = step_executor(full)
        verify = fcfg["verify"]
        verify_executor = section_settings(None, verify, "filter.verify", ["executor"])["executor"]
        if verify_executor == "inherit" or not verify["enabled"]:
            verify_executor = executor
        families = dict(verify.get("families") or {})
        quality = fcfg["quality"]
        if quality["enabled"]:
            from nemo_taskseed.filter.quality import build_checks

            build_checks(quality["checks"])  # a bad filter name or parameter fails here, before any shard runs
            if quality["enrichment_failure"] not in ("strip", "drop"):
                raise UserError(
                    f"filter.quality.enrichment_failure: expected strip or drop, got {quality['enrichment_failure']!r}"
                )
        dedup = fcfg["dedup"]
        if dedup["backend"] not in ("cpu", "gpu"):
            raise UserError(f"filter.dedup.backend must be cpu or gpu, got {dedup['backend']!r}")
        semantic_dedup = dedup.get("semantic") or {}
        settings = cls(
            raw=fcfg,
            executor=executor,
            shard_bytes=_shard_bytes(fcfg),
            verify_executor=verify_executor,
            task_kinds=dict(task_kinds or {}),
            families=families,
            backend_config=verify.get("backend") or full["generate"]["backend"],
            dedup=DedupSettings.from_config(dedup),
            explanation=ExplanationSettings.from_config(quality["explanation"], families, task_kinds),
            semantic=SemanticSettings.from_config(fcfg["decontam"]["semantic"])
            if fcfg["decontam"]["enabled"]
            else None,
            semantic_dedup=SemanticDedupSettings.from_config(semantic_dedup) if semantic_dedup.get("enabled") else None,
            vote=VoteSettings.from_config(verify["vote"]) if verify["enabled"] else None,
            code=CodeSettings.from_config(verify["code"]) if verify["enabled"] else None,
            default_benchmarks=default_benchmark_names(),
            check_settings=_check_settings(fcfg),
        )
        semantic = settings.semantic
        if settings.semantic_decontam_on and semantic.judge_enabled and not semantic.judge.get("backend"):
            # Here, not when the first shard reaches its review band after embedding it.
            raise UserError(
                "filter.decontam.semantic.judge.enabled is true but judge.backend is not set: give a backend "
                "section, e.g. {kind: openai, model: NAME, openai: {base_url: http://HOST:8000/v1}} "
                "(docs/decontamination.md, 'With a real judge')"
            )
        return settings

    def section(self, dotted: str) -> dict[str, Any]:
        """A sub-section of `filter` (`quality.explanation`); {} when absent."""
        return sub_section(self.raw, dotted) or {}

    # The switches the checks are declared with (filter/checks.py derives `checks_run` from them).
    @property
    def quality_on(self) -> bool:
        return bool(self.raw["quality"]["enabled"])

    @property
    def decontam_on(self) -> bool:
        return bool(self.raw["decontam"]["enabled"])

    @property
    def semantic_decontam_on(self) -> bool:
        return bool(self.decontam_on and (self.raw["decontam"].get("semantic") or {}).get("enabled"))

    @property
    def verify_on(self) -> bool:
        return bool(self.raw["verify"]["enabled"])

    @property
    def cpu_dedup(self) -> bool:
        """Exact or fuzzy dedup on the cpu backend: the screen phase writes signatures."""
        return self.raw["dedup"]["backend"] == "cpu" and (self.dedup.exact or self.dedup.fuzzy)

    @property
    def semantic_dedup_on(self) -> bool:
        return bool(self.raw["dedup"]["backend"] == "cpu" and (self.raw["dedup"].get("semantic") or {}).get("enabled"))

    @property
    def diversity_on(self) -> bool:
        return bool((self.raw.get("diversity") or {}).get("enabled"))

    @property
    def needs_embeddings(self) -> bool:
        """Semantic dedup and the diversity metrics read the item embeddings the semantic stage saves."""
        return self.semantic_decontam_on or self.semantic_dedup_on or self.diversity_on

    @property
    def embedding_settings(self) -> SemanticSettings:
        """The embedder's settings (filter.decontam.semantic), also when only dedup or diversity embed."""
        return self.semantic or SemanticSettings.from_config(self.raw["decontam"]["semantic"])
