"""`taskseed tokenize` / the `tokenize` step of `taskseed run`: curated JSONL -> Megatron indexed
datasets (`<prefix>.bin` / `<prefix>.idx`), one prefix per group, one shard per input file
(`tokenize.input_glob`), on `tokenize.executor` (inherit: `run.executor`).

Every input file is one shard, tokenized on its own (`shard.py`, a Curator task through the shard
driver, pipeline/driver.py) on any executor, then merged here:

    <out>/shards/<shard>/<family>__<variant>.bin/.idx   the shard's prefixes (one per group it holds)
    <out>/shards/<shard>.json                          its done marker (pipeline/shards.py), written
                                                       last: fingerprint, per-prefix counts and
                                                       checksums, per-file counts, rejects, node
    <out>/<family>__<variant>.bin/.idx                 merge=true: the shards' prefixes of a group
                                                       concatenated in shard order (megatron.py)
    <out>/manifest.json, <out>/rejects.jsonl           what is complete; bad lines, in shard order

A shard's tokens depend only on its file and the settings, and shards are merged in sorted shard
order, so the output bytes are the same whatever the executor, worker count or restart history.

Crash safety: a restart skips shards whose marker matches the file and settings and whose prefixes
are on disk. Every merged prefix is built under `<out>/.partial-<pid>/` and only moved into place
after it is finalized; the `.idx` is moved last, and `manifest.json` (written atomically at the
very end, after the read-back check) is the only record of what is complete. A killed run
therefore leaves at most hidden partial folders (removed by the next run), never a `.bin`/`.idx`
pair that looks complete but is not.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np

from nemo_taskseed.config import section_settings
from nemo_taskseed.pipeline import driver, publish, shards
from nemo_taskseed.pipeline.lock import holds_output_lock
from nemo_taskseed.tokenize.encoder import load_hf_tokenizer, tokenizer_fingerprint
from nemo_taskseed.tokenize.megatron import (
    MANIFEST_NAME,
    MANIFEST_SCHEMA,
    merge_prefixes,
    prefixes_on_disk,
    resolve_dtype,
    shard_entries,
    verify_prefixes,
)
from nemo_taskseed.tokenize.options import ShardSpec, TokenizeError, TokenizeOptions, resolve_executor
from nemo_taskseed.tokenize.shard import SHARDS_DIR
from nemo_taskseed.utils.jsonl import line_ranges, write_json, write_lines

REJECTS_NAME = "rejects.jsonl"


def tokenizer_path_from_config(section) -> Path:
    if section.get("tokenizer"):
        return Path(section.tokenizer)
    from nemo_taskseed.models import prepare_model

    return Path(prepare_model())


def _is_reject_file(path: Path, in_dir: Path) -> bool:
    try:
        parts = path.relative_to(in_dir).parts
    except ValueError:
        parts = path.parts
    return any(p == "rejected" for p in parts[:-1]) or parts[-1].startswith(("rejected", "rejects"))


def _glob(in_dir: Path, patterns: list[str]) -> list[Path]:
    found = {p for pattern in patterns for p in in_dir.glob(pattern) if p.is_file()}
    return sorted(p for p in found if not _is_reject_file(p, in_dir))


def input_files(section, in_dir: Path) -> list[Path]:
    """The input files of `in_dir` per `tokenize.input_glob`; each becomes one shard.

    `input_glob` is one pattern, a list of patterns (their union), or a list of groups (lists of
    patterns): then the first group that matches any file wins. The default prefers the filter
    step's kept records (`curated/part-*.jsonl`, legacy `curated*.jsonl`) and falls back to the
    generate step's (`generated/part-*.jsonl`, legacy `generated*.jsonl`). Rejects
    (`rejected/part-*.jsonl`, `rejected*.jsonl`, `rejects.jsonl`) are never input.
    """
    in_dir = Path(in_dir)
    files = _input_files(section, in_dir)
    # A folder a taskseed step wrote: only the parts its finished run published (pipeline/publish.py).
    for kind in ("curated", "generated"):
        if any(f.parent == in_dir / kind for f in files):
            published = publish.published_files(in_dir, kind)
            if published is not None:
                listed = set(published)
                files = [f for f in files if f.parent != in_dir / kind or f in listed]
    return files


def _input_files(section, in_dir: Path) -> list[Path]:
    patterns = section_settings(None, section, "tokenize", ["input_glob"])["input_glob"]
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    if any(not isinstance(p, str) for p in patterns):
        groups = [[p] if isinstance(p, str) else [str(x) for x in p] for p in patterns]
        for group in groups:
            files = _glob(in_dir, group)
            if files:
                return files
        flat = [p for group in groups for p in group]
    else:
        files = _glob(in_dir, [str(p) for p in patterns])
        if files:
            return files
        flat = patterns
    raise TokenizeError(f"no {' or '.join(map(str, flat))} files in {in_dir}")


# ---------------------------------------------------------------------------------------------
# The run: check the inputs, plan shards, run the missing ones, merge, verify, write the manifest
# ---------------------------------------------------------------------------------------------


def shard_names(files: Sequence[Path]) -> list[str]:
    """One unique, file-system-safe shard name per file, in the files' order.

    `part-<shard>.jsonl` keeps its shard name; any other file is named after its stem (a legacy
    `curated.jsonl` is shard `curated`). Clashes (the same name in two folders) get `-2`, `-3`, ...
    A name never ends in `.json`, so `shards/<shard>/` never collides with another shard's marker.
    """
    names: list[str] = []
    seen: set[str] = set()
    for path in files:
        base = shards.safe_name(shards.shard_of_part(path))
        if base.endswith(".json"):
            base = base[: -len(".json")] + "_json"
        name, k = base, 1
        while name in seen:
            k += 1
            name = f"{base}-{k}"
        seen.add(name)
        names.append(name)
    return names


def plan_shards(files: Sequence[Path], spec: ShardSpec, shard_bytes: int = 0) -> list[driver.Shard]:
    """One shard per file, in shard-name order; a file over `shard_bytes` (0: no limit) is cut at
    line ends into pieces `<name>.r00000`, ... that sort in file order, so one large file is
    tokenized by many workers and merged back in its own order (the merged prefixes are the same
    whatever the cut). The task names the file by its absolute path (Ray workers need not share
    the driver's working directory) and as given (rejects and the manifest)."""
    from nemo_taskseed.tokenize.stages import shard_task

    planned = []
    for name, f in zip(shard_names(files), files):
        ranges = line_ranges(f, shard_bytes)
        pieces = [(name, None)] if len(ranges) == 1 else [(f"{name}.r{k:05d}", r) for k, r in enumerate(ranges)]
        for piece, span in pieces:
            where = [span.start, span.end, span.first_line] if span else None
            fingerprint = spec.shard_fingerprint(f.resolve(), str(f), where)
            task = partial(shard_task, piece, str(f.resolve()), str(f), fingerprint, where)
            planned.append(driver.Shard(name=piece, fingerprint=fingerprint, task=task))
    return sorted(planned, key=lambda s: s.name)


def _has_a_line(path: Path) -> bool:
    """Does the file hold at least one non-blank line? (stops at the first one)"""
    with open(path, "rb") as handle:
        return any(line.strip() for line in handle)


def check_inputs(files: Sequence[Path], out_dir: Path) -> None:
    """Inputs that exist, hold a document, and lie outside the output folder."""
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise TokenizeError(f"input file(s) not found: {', '.join(missing)}")
    if not files:
        raise TokenizeError("no input files to tokenize")
    if not any(_has_a_line(f) for f in files):
        # Tokenizing nothing would "finish" by removing every earlier output as stale.
        raise TokenizeError(
            f"the {len(files)} input file(s) hold no documents (e.g. {files[0]} is empty): nothing "
            f"to tokenize; the outputs already in {out_dir} are left as they are"
        )
    resolved = out_dir.resolve()
    inside = [str(f) for f in files if f.resolve().is_relative_to(resolved)]
    if inside:  # its shards/ folder would clash with the producing step's markers, and stale cleanup with its files
        raise TokenizeError(
            f"input {inside[0]} is inside the output folder {resolved}: tokenize into a folder of its own"
        )


def shard_spec(opts: TokenizeOptions, hf_tokenizer) -> ShardSpec:
    """The options resolved against the tokenizer: its fingerprint, EOD token and dtype."""
    eod = opts.eod_token_id if opts.eod_token_id is not None else hf_tokenizer.eos_token_id
    if opts.append_eod and eod is None:
        raise TokenizeError(f"tokenizer {opts.tokenizer_path} has no eos token: set tokenize.eod_token_id")
    return ShardSpec(
        tokenizer_path=str(Path(opts.tokenizer_path).resolve()),
        tokenizer_sha256=tokenizer_fingerprint(opts.tokenizer_path),
        text_field=str(opts.text_field),
        group_by=tuple(opts.group_by),
        optional_group_keys=tuple(opts.optional_group_keys),
        missing_group_value=str(opts.missing_group_value),
        max_document_chars=int(opts.max_document_chars or 0),
        add_special_tokens=bool(opts.add_special_tokens),
        eod_token_id=int(eod) if opts.append_eod else None,
        dtype=resolve_dtype(opts.dtype, len(hf_tokenizer)).name,
    )


def _invalidate_previous(out_dir: Path) -> None:
    """Before anything changes: drop the leftovers of an interrupted run, and the manifest and the
    merged prefixes it vouched for (the shards' own files are the driver's to keep or remove)."""
    for partial_dir in [*out_dir.glob(".partial-*"), *(out_dir / SHARDS_DIR).glob(".partial-*")]:
        shutil.rmtree(partial_dir, ignore_errors=True)
    manifest = out_dir / MANIFEST_NAME
    if not manifest.is_file():
        return
    try:
        old = json.loads(manifest.read_text())
        names = [p["path"] for p in old.get("prefixes", []) if not p.get("shard")]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        names = []
    manifest.unlink()  # from here on nothing in out_dir claims to be complete
    for name in names:
        for suffix in (".idx", ".bin"):  # .idx first: a lone .bin never looks like a dataset
            (out_dir / f"{name}{suffix}").unlink(missing_ok=True)


def _shard_stages(out_dir: Path, spec: ShardSpec, opts: TokenizeOptions, executor: str, hf_tokenizer) -> list:
    from nemo_taskseed.tokenize.stages import TokenizeShardStage

    inline = executor == "inline"
    return [
        TokenizeShardStage(
            out_dir=str(out_dir),
            spec=asdict(spec),
            workers=int(opts.workers),
            encode_batch_size=int(opts.batch_size),
            progress=bool(opts.progress and inline),
            threads_per_reserved_cpu=not inline,
            # reuse the driver's copy in-process; workers load their own
            hf_tokenizer=hf_tokenizer if inline else None,
        )
    ]


def build_manifest(
    opts: TokenizeOptions, spec: ShardSpec, hf_tokenizer, markers: list[dict], prefixes: list[dict], rejects: list
) -> dict:
    """What is complete: a function of the inputs and the settings (bar `created_unix` and
    `totals.seconds`, which the caller sets)."""
    return {
        "schema": MANIFEST_SCHEMA,
        "created_unix": int(time.time()),
        "tokenizer": {
            "path": spec.tokenizer_path,
            "class": type(hf_tokenizer).__name__,
            "vocab_size": len(hf_tokenizer),
            "eod_token_id": spec.eod_token_id,
            "add_special_tokens": spec.add_special_tokens,
            "fingerprint_sha256": spec.tokenizer_sha256,
        },
        "dtype": spec.dtype,
        "append_eod": bool(opts.append_eod),
        "text_field": opts.text_field,
        "group_by": list(opts.group_by),
        "merged": bool(opts.merge),
        "prefixes": prefixes,
        "inputs": [i for m in markers for i in m["inputs"]],
        "shards": [
            {
                "shard": m["shard"],
                "input": m["input"]["path"],
                "fingerprint": m["fingerprint"],
                **{k: m["totals"][k] for k in ("prefixes", "documents", "tokens", "rejected")},
            }
            for m in markers
        ],
        "totals": {
            "prefixes": len(prefixes),
            "documents": sum(p["documents"] for p in prefixes),
            "tokens": sum(p["tokens"] for p in prefixes),
            "rejected": len(rejects),
            "shards": len(markers),
            "seconds": None,
        },
        "rejects_file": REJECTS_NAME if rejects else None,
    }


def _write_rejects(out_dir: Path, rejects: list[dict]) -> None:
    if rejects:
        write_lines(out_dir / REJECTS_NAME, (json.dumps(r, ensure_ascii=False) for r in rejects))
    else:
        (out_dir / REJECTS_NAME).unlink(missing_ok=True)


@holds_output_lock("tokenize", "out_dir")
def run_tokenize(
    files: Sequence[Path], out_dir: Path, opts: TokenizeOptions, *, hf_tokenizer=None, executor: str | None = None
) -> tuple[dict, dict]:
    """Tokenize `files` (one shard each) into `out_dir`: `(manifest, run)`.

    The manifest (also written to `manifest.json`) is a function of the inputs and the settings
    (bar `created_unix` and `totals.seconds`); `run` describes this invocation: executor, shards run
    now / finished before / removed, and the nodes that ran them.
    `hf_tokenizer`: the already loaded tokenizer of `opts.tokenizer_path` (saves a reload, ~1-3 s).
    """
    started = time.perf_counter()
    files = [Path(f) for f in files]
    check_inputs(files, Path(out_dir))
    executor = resolve_executor(executor or opts.executor)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if hf_tokenizer is None:
        hf_tokenizer = load_hf_tokenizer(opts.tokenizer_path)
    spec = shard_spec(opts, hf_tokenizer)
    planned = plan_shards(files, spec, int(opts.shard_bytes))
    _invalidate_previous(out_dir)
    run = driver.run_shards(
        out_dir,
        planned,
        lambda todo: _shard_stages(out_dir, spec, opts, executor, hf_tokenizer),
        executor,
        label="tokenize shards" if opts.progress and len(planned) > 1 else None,
        name="taskseed_tokenize",
        dirs=(SHARDS_DIR,),
        verify=partial(prefixes_on_disk, out_dir),
    )
    markers = [run.markers[name] for name in run.planned]
    if opts.merge:
        prefixes = merge_prefixes(out_dir, markers, np.dtype(spec.dtype), spec.group_by)
    else:
        prefixes = shard_entries(markers)
    rejects = [r for m in markers for r in m["rejects"]]
    _write_rejects(out_dir, rejects)
    manifest = build_manifest(opts, spec, hf_tokenizer, markers, prefixes, rejects)
    manifest["totals"]["seconds"] = round(time.perf_counter() - started, 3)
    problems = verify_prefixes(out_dir, manifest)
    if problems:  # the manifest is not written: nothing claims these datasets are good
        raise TokenizeError("read-back check failed:\n  " + "\n  ".join(problems))
    write_json(out_dir / MANIFEST_NAME, manifest)
    nodes = Counter(m["node_id"] for m in markers if m["shard"] in run.ran)
    return manifest, {
        "executor": executor,
        "shards": len(planned),
        "run_now": len(run.ran),
        "finished_before": len(planned) - len(run.ran),
        "removed_stale": run.removed,
        "nodes": dict(sorted(nodes.items())),
    }


def tokenize_files(
    files: Sequence[Path], out_dir: Path, opts: TokenizeOptions, *, hf_tokenizer=None, executor: str | None = None
) -> dict:
    """Tokenize `files` into `out_dir`; returns the manifest (also written to `manifest.json`).

    `executor` overrides `opts.executor` (inherit means inline here). See `run_tokenize`.
    """
    return run_tokenize(files, out_dir, opts, hf_tokenizer=hf_tokenizer, executor=executor)[0]


def tokenize_inputs(
    section,
    out_dir: Path,
    *,
    files: list[Path] | None = None,
    in_dir: Path | None = None,
    workers: int | None = None,
    run_executor: str | None = None,
) -> tuple[dict, dict]:
    """Tokenize the given files, or `in_dir`'s input files, into `out_dir`; returns `(manifest, run)`.

    What `taskseed run` and `taskseed tokenize` both call; `check_rejects` then applies
    `tokenize.fail_on_rejects` (after the datasets are written, so nothing done is lost)."""
    if (files is None) == (in_dir is None):
        raise TokenizeError("give JSONL files or --in DIR (one of them)")
    files = input_files(section, in_dir) if in_dir is not None else [Path(f) for f in files]
    if not files:
        raise TokenizeError("no input: give JSONL files or --in DIR")
    opts = TokenizeOptions.from_config(section, tokenizer_path_from_config(section), run_executor=run_executor)
    if workers is not None:
        opts.workers = workers
    return run_tokenize(files, out_dir, opts)


def check_rejects(section, manifest: dict, out_dir: Path) -> None:
    if section.get("fail_on_rejects") and manifest["totals"]["rejected"]:
        raise TokenizeError(
            f"{manifest['totals']['rejected']} bad input lines were rejected (see {Path(out_dir) / 'rejects.jsonl'}) "
            "and tokenize.fail_on_rejects=true"
        )


def run_step(cfg, in_dir: Path, out_dir: Path) -> dict:
    run_executor = section_settings(None, cfg, "run", ["executor"])["executor"]
    manifest, run = tokenize_inputs(cfg.tokenize, out_dir, in_dir=in_dir, run_executor=run_executor)
    check_rejects(cfg.tokenize, manifest, out_dir)
    return {
        "step": "tokenize",
        "out_dir": str(out_dir),
        **manifest["totals"],
        "merged": manifest["merged"],
        "shards": run,
    }
