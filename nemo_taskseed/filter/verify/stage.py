"""Answer verification as a filter check: majority vote of one or more verifier models
(multiple choice, math, short answer) and sandboxed tests (code); see `vote.py`, `sandbox.py`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import DocumentBatch

from nemo_taskseed.filter.checks import CheckContext, FilterStage, register_check
from nemo_taskseed.filter.records import annotate, kept_items, parsed_records, reject
from nemo_taskseed.filter.verify.sandbox import CodeSettings
from nemo_taskseed.filter.verify.vote import VoteSettings
from nemo_taskseed.llm.backends import build_backend
from nemo_taskseed.pipeline import shards


@dataclass
class VerificationStage(FilterStage):
    """Majority vote (multiple choice, math, short answer) and sandboxed tests (code).

    `backend`: a `nemo_taskseed.llm.Backend`; if None, `build_backend(backend_config)` is called
    on the worker at its first vote and closed in `teardown()`.
    """

    name: str = "verify"
    # `filter.verify.vote` / `filter.verify.code`; required once a shard has items of that kind.
    vote: VoteSettings | None = None
    code: CodeSettings | None = None
    families: dict[str, str] = field(default_factory=dict)
    task_kinds: dict[str, str] = field(default_factory=dict)
    backend_config: dict[str, Any] | None = None
    backend: Any = None
    keep_outputs: bool = False
    # Several verifier models voting together (backend sections); empty: the one backend above.
    panel: list[dict[str, Any]] = field(default_factory=list)
    # Injected panel members [(name, backend)] (tests, notebooks); else built from `panel`.
    panel_backends: list[tuple[str, Any]] | None = None
    drop_too_easy: bool = False
    # Where each shard's request cache lives (the filter's `cache/`); None: no cache (notebooks).
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        from nemo_taskseed.llm.backends import engine_gpus

        # In-process vLLM on a GPU node: each verification actor holds its engine's (or its
        # panel's engines') GPU(s).
        gpus = sum(engine_gpus(c) for c in self.panel) if self.panel else engine_gpus(self.backend_config)
        self.resources = Resources(cpus=1.0, gpus=gpus)

    def ray_stage_spec(self) -> dict[str, Any]:
        # An actor: the model (in-process vLLM) is built once per worker and kept; spread over nodes.
        return shards.ray_actor_spec(ProcessingStage.ray_stage_spec(self))

    def setup(self, worker_metadata=None) -> None:
        self._owns_backend = False

    def _backend(self):
        if self.backend is None:
            from nemo_taskseed.llm.backends import build_backend

            self.backend = build_backend(self.backend_config or {})
            self._owns_backend = True
        return self.backend

    def _members(self) -> list[tuple[str, Any]]:
        """The verifiers: the panel's models, or the one backend."""
        if self.panel_backends is not None:
            return list(self.panel_backends)
        if self.panel:
            if not getattr(self, "_panel", None):
                self._panel = [
                    (str(c.get("model") or f"member{i}"), build_backend(c)) for i, c in enumerate(self.panel)
                ]
            return self._panel
        backend = self._backend()
        return [(str(getattr(backend, "model", "verifier")), backend)]

    def teardown(self) -> None:
        if getattr(self, "_owns_backend", False) and self.backend is not None:
            self.backend.close()
            self.backend = None
        for _, member in getattr(self, "_panel", None) or []:
            member.close()
        self._panel = []

    def process(self, task: DocumentBatch) -> DocumentBatch:
        """The shard's votes go through its own request cache (`<cache_dir>/<shard>.verify.sqlite`,
        one writer: this worker), so a shard killed midway asks only what it had not asked; its
        request counts, token usage and model time go to the step's summary and cost."""
        from nemo_taskseed.llm.requests import RequestSession

        started = time.monotonic()
        with RequestSession.for_shard(self.cache_dir, task.dataset_name, "verify") as self._session:
            task = super().process(task)
        seconds = time.monotonic() - started
        task._metadata["requests.verify"] = self._session.stats.as_dict()
        task._metadata["usage.verify"] = {
            **self._session.usage.as_dict(),
            "seconds": round(seconds, 3),
            "gpu_seconds": round(seconds * float(self.resources.gpus or 0), 3),
        }
        return task

    def filter_frame(self, df: pd.DataFrame) -> None:
        from nemo_taskseed.filter.verify import panel_vote, run_code_tests
        from nemo_taskseed.registry import verifier_kind

        # One check per item (the representative row); all its variants share the verdict.
        reps, members = kept_items(df)
        records = parsed_records(df)
        groups: dict[str, list[Any]] = {}
        for idx in reps:
            task = str((records[df.index.get_loc(idx)] or {}).get("task"))
            kind = verifier_kind(df.at[idx, "family"], df.at[idx, "format"], self.families, self.task_kinds.get(task))
            groups.setdefault(kind, []).append(idx)

        def settle(rep: Any, info: dict[str, Any], reason: str | None) -> None:
            for idx in members[rep]:
                annotate(df, idx, "verification", info)
                if reason:
                    reject(df, idx, self.name, reason, info)

        for rep in groups.pop("code", []):
            rec = records[df.index.get_loc(rep)]
            code, tests = rec.get("reference"), rec.get("tests") or []
            if not code or not tests:
                settle(rep, {"method": "code_tests", "status": "missing"}, "code_missing_solution_or_tests")
                continue
            if self.code is None:
                raise ValueError("VerificationStage.code (filter.verify.code) is needed to check code items")
            res = run_code_tests(code, tests, settings=self.code)
            settle(rep, {"method": "code_tests", **res.to_dict()}, None if res.passed else f"code_{res.status}")

        if groups and self.vote is None:
            raise ValueError("VerificationStage.vote (filter.verify.vote) is needed to vote on items")
        for kind, idxs in groups.items():
            batch = [records[df.index.get_loc(i)] for i in idxs]
            results = panel_vote(
                self._members(), batch, kind, self.vote, too_easy=self.drop_too_easy, session=self._session
            )
            for rep, res in zip(idxs, results):
                info = res.to_dict(keep_outputs=self.keep_outputs)
                if res.target is None:
                    settle(rep, info, f"{kind}_no_reference_answer")
                elif not res.passed:
                    settle(rep, info, f"{kind}_vote_disagrees")
                else:
                    settle(rep, info, f"{kind}_too_easy" if res.too_easy else None)


def _warnings(settings, facts) -> list[str]:
    verify = settings.raw["verify"]
    if not verify["enabled"]:
        return ["verification is off (filter.verify.enabled=false): answers were not checked"]
    if not verify.get("backend") and not verify.get("panel"):
        return [
            "verification uses the generator's own model (filter.verify.backend and filter.verify.panel "
            "unset): the model grades its own items; give verification a model of its own"
        ]
    return []


@register_check(
    "verify",
    phase="verify",
    order=100,
    section="verify",
    report_column="verified",
    enabled=lambda s: s.verify_on,
    warnings=_warnings,
)
def verification_stage(ctx: CheckContext) -> VerificationStage:
    s, verify = ctx.settings, ctx.settings.raw["verify"]
    return VerificationStage(
        vote=s.vote,
        code=s.code,
        families=dict(s.families),
        task_kinds=dict(s.task_kinds),
        backend_config=s.backend_config,
        backend=ctx.backend,
        cache_dir=str(ctx.out_dir / "cache"),
        keep_outputs=bool(verify.get("keep_outputs")),
        panel=[dict(m) for m in verify.get("panel") or []],
        drop_too_easy=bool(verify.get("drop_too_easy")),
    )
