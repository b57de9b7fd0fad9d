"""Run a preview: pick N seeds, then the real generate and filter steps on them, in one folder.

    <out>/seed_pool/   the seeds step's own output (run_step of nemo_taskseed.seeds.step), for the
                       few subtasks chosen and a few rows each
    <out>/seeds/       the N seeds picked from it (seeds.<task>.jsonl + summary.json): what the
                       generate step reads and what the filter checks items against
    <out>/generate/    run_step of nemo_taskseed.generate.step
    <out>/filter/      run_filter of nemo_taskseed.filter.step (what its run_step calls, without
                       printing the filter's report to the terminal: the preview shows its own)
    <out>/preview.md, preview.json, taskseed.log

Nothing here generates or checks anything itself: a rerun goes through the steps' own resume
(shard markers keyed on the seeds' bytes, the settings and the prompt files' bytes) and their
request caches (keyed on the rendered messages), so an edited prompt is asked again and an
unchanged one is not.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nemo_taskseed.config import section_settings, to_container
from nemo_taskseed.errors import UserError
from nemo_taskseed.llm.backends import Backend, Request, RequestFeed, build_backend
from nemo_taskseed.utils.jsonl import write_text_atomic

SEED_POOL = "seed_pool"
SEEDS = "seeds"
PREVIEW_MD = "preview.md"
PREVIEW_JSON = "preview.json"


@dataclass
class PreviewRun:
    """What one preview did: its folder, the seeds in view order, and each step's summary."""

    out: Path
    config: Any
    seeds: list[dict[str, Any]]
    seed_notes: list[str]
    generate: dict[str, Any]
    filter: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    engine_started: bool | None = False


# ---------------------------------------------------------------------------------------------
# The backend, started only when a request is not in a cache
# ---------------------------------------------------------------------------------------------


class LazyBackend(Backend):
    """`build_backend(section)`, built on the first request that reaches it.

    A preview rerun whose shards rerun only because a prompt file these seeds do not use changed
    (the shard fingerprint hashes every prompt file) finds every request in the shard caches:
    run_requests then never calls `stream`, and the ~40 s vLLM engine start is not paid.
    """

    def __init__(self, section: dict[str, Any]):
        section = dict(section)
        if not section.get("model"):
            # build_backend's own default (`model: null`), resolved here because request keys and
            # record lineage carry the model name before any engine exists.
            from nemo_taskseed.models import prepare_model

            section["model"] = str(prepare_model())
        super().__init__(str(section["model"]))
        self.name = str(section.get("kind", "vllm"))
        self._section = section
        self._backend: Backend | None = None

    @property
    def started(self) -> bool:
        return self._backend is not None

    def _real(self) -> Backend:
        if self._backend is None:
            self._backend = build_backend(self._section)
            self.max_in_flight = self._backend.max_in_flight
        return self._backend

    def stream(self, requests: list[Request] | RequestFeed):
        backend = self._real()
        yield from backend.stream(requests)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


# ---------------------------------------------------------------------------------------------
# Seeds
# ---------------------------------------------------------------------------------------------


def spread(subtasks: int, n: int) -> list[tuple[int, int]]:
    """(subtask index, seeds to take) pairs: N seeds spread over the subtasks in catalog order.

    More subtasks than seeds: one seed from each of N subtasks spaced evenly over the list (so
    three seeds of five demo subtasks are not three multiple-choice ones). Otherwise every
    subtask, N // subtasks each, the first N % subtasks one more.
    """
    if subtasks < 1 or n < 1:
        return []
    if n < subtasks:
        return [(i * subtasks // n, 1) for i in range(n)]
    return [(i, n // subtasks + (1 if i < n % subtasks else 0)) for i in range(subtasks)]


def _write_if_changed(path: Path, text: str) -> None:
    # The filter fingerprints its input files by size and mtime: rewriting the same bytes would
    # make a rerun screen them again.
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    write_text_atomic(path, text)


def pick_seeds(cfg: Any, n: int, out: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Run the seeds step for the chosen subtasks into `<out>/seed_pool`, then write the picked
    seeds to `<out>/seeds`. Returns (seeds in view order, notes on subtasks that had fewer)."""
    from nemo_taskseed.catalog import load_catalog_rows
    from nemo_taskseed.seeds.step import run_step as seeds_step

    tasks = list(OmegaConf.to_container(cfg.seeds.tasks) or [])
    if not tasks:
        raise UserError("no tasks to preview: pass --tasks t1,t2 or set seeds.tasks in the config")
    rows = load_catalog_rows(cfg.catalog, tasks, dedup_sources=bool(cfg.seeds.dedup_sources))
    plan = [(rows[i]["task"], k) for i, k in spread(len(rows), n)]
    seeds_cfg = copy.deepcopy(cfg)
    seeds_cfg.seeds.tasks = [task for task, _ in plan]
    seeds_cfg.seeds.max_per_subtask = max(k for _, k in plan)
    # Volume targets share a run's millions of seeds over families; a preview asks for N.
    seeds_cfg.seeds.targets = {"knowledge": None, "reasoning": None, "families": {}, "min_per_subtask": 0}
    pool = out / SEED_POOL
    pool.mkdir(parents=True, exist_ok=True)
    seeds_step(seeds_cfg, None, pool)

    picked_dir = out / SEEDS
    picked_dir.mkdir(parents=True, exist_ok=True)
    pool_summary = json.loads((pool / "summary.json").read_text())
    seeds: list[dict[str, Any]] = []
    notes: list[str] = []
    per_task: dict[str, Any] = {}
    wanted = set()
    for task, k in plan:
        source = pool / f"seeds.{task}.jsonl"
        lines = source.read_text(encoding="utf-8").splitlines()[:k] if source.is_file() else []
        if len(lines) < k:
            notes.append(f"{task}: {len(lines)} of {k} seeds (the seeds step kept no more; see {pool}/rejected.jsonl)")
        if not lines:
            continue
        name = f"seeds.{task}.jsonl"
        wanted.add(name)
        _write_if_changed(picked_dir / name, "".join(line + "\n" for line in lines))
        seeds.extend(json.loads(line) for line in lines)
        info = dict((pool_summary.get("per_task") or {}).get(task) or {})
        per_task[task] = {"kept": len(lines), "verifier": info.get("verifier"), "aliases": info.get("aliases", [])}
    for stale in picked_dir.glob("seeds*.jsonl"):
        if stale.name not in wanted:  # a subtask no longer picked: the generate step reads every seeds*.jsonl
            stale.unlink()
    if not seeds:
        raise UserError(f"the seeds step kept no seed of {', '.join(t for t, _ in plan)} (see {pool}/rejected.jsonl)")
    # The filter reads each task's answer check (per_task.*.verifier) from the seeds folder's summary.
    summary = {"kept": len(seeds), "per_task": per_task, "picked_from": str(pool)}
    _write_if_changed(picked_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return seeds, notes


def use_demo_mirror(cfg: Any, out: Path) -> None:
    """As `taskseed run` does with run.demo_mirror: seed (and decontaminate) from the demo mirror,
    written under the preview's folder. Rewritten only when its files differ: the seeds step
    fingerprints its source files by mtime and would otherwise collect again on every rerun."""
    if not cfg.run.get("demo_mirror") or cfg.seeds.get("mirror"):
        return
    from importlib.resources import files

    from nemo_taskseed.demo import DEMO_FILES, write_demo_mirror

    root = out / "demo_mirror"
    data = files("nemo_taskseed.demo") / "data"
    current = all(
        (root / target).is_file() and (root / target).read_bytes() == (data / packaged).read_bytes()
        for packaged, target in DEMO_FILES.items()
    )
    if not current:
        write_demo_mirror(root)
    cfg.seeds.mirror = str(root.resolve())
    if not cfg.filter.decontam.get("mirror"):
        cfg.filter.decontam.mirror = cfg.seeds.mirror


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------


def prompt_files(cfg: Any) -> dict[str, str]:
    """sha256 of every prompt file the generate step would read (the same files its shard
    fingerprint hashes), by file name."""
    from nemo_taskseed.generate.prompts import prompts_dir

    folder = prompts_dir(cfg.generate.get("prompts_dir"))
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.yaml"))}


def previous_prompts(out: Path) -> dict[str, str] | None:
    """The prompt files' hashes as the last preview in `out` saw them (None: no earlier preview)."""
    try:
        return json.loads((out / PREVIEW_JSON).read_text()).get("prompt_files")
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def preview_config(cfg: Any, *, tasks: list[str] | None = None, out: str | Path | None = None) -> tuple[Any, Path]:
    """A copy of `cfg` set up for a preview in `out` (default preview.workdir)."""
    settings = section_settings(None, cfg, "preview", ("workdir", "executor"))
    cfg = copy.deepcopy(cfg)
    out = Path(out or settings["workdir"])
    cfg.run.workdir = str(out)
    if tasks:
        cfg.seeds.tasks = list(tasks)
    executor = settings["executor"]
    if executor:
        cfg.run.executor = executor
        cfg.generate.executor = executor
        cfg.filter.executor = executor
    return cfg, out


def run_preview(
    cfg: Any,
    *,
    n: int | None = None,
    tasks: list[str] | None = None,
    out: str | Path | None = None,
    backend: Backend | None = None,
    on_step: Callable[[str, float, dict[str, Any]], None] | None = None,
) -> PreviewRun:
    """N seeds (default preview.seeds) through the seeds, generate and filter steps into `out`.

    `backend`: a running engine to use (tests, notebooks); otherwise one is built from
    generate.backend the first time a request is not in a cache. `on_step(step, seconds,
    summary)` is called as each step finishes (the CLI prints a line).
    """
    from nemo_taskseed.filter.step import run_filter
    from nemo_taskseed.generate.step import run_step as generate_step

    n = int(n if n is not None else section_settings(None, cfg, "preview", ("seeds",))["seeds"])
    if n < 1:
        raise UserError(f"preview: -n must be >= 1, got {n}")
    cfg, out = preview_config(cfg, tasks=tasks, out=out)
    out.mkdir(parents=True, exist_ok=True)
    use_demo_mirror(cfg, out)
    seconds: dict[str, float] = {}
    own_backend = backend is None
    model = backend
    if model is None and cfg.generate.executor == "inline":
        model = LazyBackend(to_container(cfg.generate.backend))
    # On Ray (preview.executor) the model stage builds one backend per worker, as in a run.

    def timed(step: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = fn()
        seconds[step] = round(time.perf_counter() - started, 1)
        if on_step is not None:
            on_step(step, seconds[step], result if isinstance(result, dict) else {})
        return result

    try:
        seeds, notes = timed("seeds", lambda: pick_seeds(cfg, n, out))
        gen = timed("generate", lambda: generate_step(cfg, out / SEEDS, out / "generate", backend=model))
        vf = cfg.filter.verify
        # Verification asks the generator's model unless it has its own (filter.verify.backend or
        # panel): then it shares this engine instead of starting a second one.
        shares_engine = model is not None and bool(vf.enabled) and not vf.get("backend") and not vf.get("panel")
        filtered = timed(
            "filter",
            lambda: run_filter(
                cfg, out / "generate", out / "filter", out / SEEDS, backend=model if shares_engine else None
            ),
        )
        filtered.pop("summary", None)  # the filter's report table: the preview shows its own view
        # None: the Ray workers built their own backends, this process cannot tell.
        engine_started = model.started if isinstance(model, LazyBackend) else None
    finally:
        if own_backend and model is not None:
            model.close()
    return PreviewRun(out, cfg, seeds, notes, gen, filtered, seconds, engine_started=engine_started)


# ---------------------------------------------------------------------------------------------
# Run, join, write
# ---------------------------------------------------------------------------------------------


@dataclass
class Preview:
    """A finished preview: the run, the joined view, and where its markdown went."""

    run: PreviewRun
    view: Any  # view.PreviewView
    header: Any  # render.Header
    counts: dict[str, int]
    reasons: dict[str, int]
    markdown: Path


def preview(
    cfg: Any,
    *,
    config_name: str = "",
    n: int | None = None,
    tasks: list[str] | None = None,
    out: str | Path | None = None,
    backend: Backend | None = None,
    on_step: Callable[[str, float, dict[str, Any]], None] | None = None,
) -> Preview:
    """`run_preview`, then the view joined from its folders, written to `<out>/preview.md` (full
    texts) and `<out>/preview.json` (the same as data, and the prompt files' hashes the next
    preview compares against)."""
    from nemo_taskseed.generate.prompts import load_templates, prompts_dir
    from nemo_taskseed.preview.render import Header, markdown
    from nemo_taskseed.preview.view import build_view, drop_reasons, to_json, view_counts

    _, folder = preview_config(cfg, out=out)
    before = previous_prompts(folder)
    # Hashed before the run, as the generate step hashes them when it starts: an edit made
    # while it runs shows as an edit on the next preview.
    hashes = prompt_files(cfg)
    run = run_preview(cfg, n=n, tasks=tasks, out=folder, backend=backend, on_step=on_step)
    view = build_view(run.seeds, run.out, run.config)

    folder_of_prompts = prompts_dir(run.config.generate.get("prompts_dir"))
    templates = load_templates(folder_of_prompts)
    used = [s.template for s in view.seeds if s.template]
    for c in (c for s in view.seeds for c in s.candidates):
        used.append((c.enrichment or {}).get("lineage", {}).get("template_id"))
        if c.enrichment_rejected:  # asked, but its reply could not be used: the template was still used
            used.append(str(run.config.enrich.template))
    rows = []
    for template_id in dict.fromkeys(t for t in used if t):
        t = templates.get(template_id)
        name = Path(t.path).name if t else "?"
        state = (
            "first preview here"
            if before is None
            else "new file"
            if name not in before
            else "edited"
            if before[name] != hashes.get(name)
            else "unchanged"
        )
        rows.append({"id": template_id, "version": t.version if t else "?", "file": name, "state": state})
    used_files = {r["file"] for r in rows}
    other = [] if before is None else sorted(f for f in set(hashes) | set(before) if hashes.get(f) != before.get(f))
    if backend is not None:
        engine = "engine given by the caller"
    elif run.engine_started is None:
        engine = "model engines built by the Ray workers"
    elif run.engine_started:
        engine = "model engine started (some requests were not in the caches)"
    else:
        engine = "no model engine started: every reply came from earlier runs"
    header = Header(
        config=config_name or "config",
        out=str(run.out),
        prompts_dir=str(folder_of_prompts),
        templates=rows,
        other_edits=[f for f in other if f not in used_files],
        steps=run.seconds,
        generation=run.generate,
        filter=run.filter,
        engine=engine,
        notes=run.seed_notes,
    )
    counts, reasons = view_counts(view), drop_reasons(view)
    md = run.out / PREVIEW_MD
    write_text_atomic(md, markdown(header, view, counts, reasons))
    data = {"prompt_files": hashes, "steps": run.seconds, "counts": counts, "dropped": reasons, "view": to_json(view)}
    write_text_atomic(run.out / PREVIEW_JSON, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return Preview(run, view, header, counts, reasons, md)
