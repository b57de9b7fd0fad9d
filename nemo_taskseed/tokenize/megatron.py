"""Curated JSONL -> Megatron indexed datasets (`<prefix>.bin` / `<prefix>.idx`), one prefix per group.

Every input file is one shard, tokenized on its own (a Curator task; see `stages.py`), in parallel
on any executor, then merged on the driver:

    <out>/shards/<shard>/<family>__<variant>.bin/.idx   the shard's prefixes (one per group it holds)
    <out>/shards/<shard>.json                          its done marker (pipeline/shards.py), written
                                                       last: fingerprint, per-prefix counts and
                                                       checksums, per-file counts, rejects, node
    <out>/<family>__<variant>.bin/.idx                 merge=true: the shards' prefixes of a group
                                                       concatenated in shard order (add_index)
    <out>/manifest.json, <out>/rejects.jsonl           what is complete; bad lines, in shard order

Written with megatron-core's `IndexedDatasetBuilder` and read back with its `IndexedDataset`. A
shard's tokens depend only on its file and the settings, and shards are merged in sorted shard
order, so the output bytes are the same whatever the executor, worker count or restart history.

Crash safety: a shard is built under `<out>/shards/.partial-*`, moved into place, then marked
done; a restart skips shards whose marker matches the file and settings. Every merged prefix is
built under `<out>/.partial-<pid>/` and only moved into place after it is finalized; the `.idx` is
moved last, and `manifest.json` (written atomically at the very end, after the read-back check) is
the only record of what is complete. A killed run therefore leaves at most hidden partial folders
(removed by the next run), never a `.bin`/`.idx` pair that looks complete but is not.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from nemo_taskseed.config import section_settings
from nemo_taskseed.errors import UserError
from nemo_taskseed.pipeline import shards
from nemo_taskseed.pipeline.lock import holds_output_lock
from nemo_taskseed.tokenize.encoder import (
    BatchEncoder,
    EncodeSettings,
    encode_batches,
    load_hf_tokenizer,
    tokenizer_fingerprint,
)
from nemo_taskseed.tokenize.records import Document, Reject, prefix_name, read_documents
from nemo_taskseed.utils.jsonl import read_json_artifact, write_json, write_lines

MANIFEST_NAME = "manifest.json"
REJECTS_NAME = "rejects.jsonl"
MANIFEST_SCHEMA = "taskseed.tokenize/1"
SHARDS_DIR = shards.MARKERS_DIR  # per-shard prefixes and markers live side by side in <out>/shards/
EXECUTORS = ("inline", "ray_data", "xenna")


class TokenizeError(UserError):
    """Nothing usable to tokenize, or a written dataset that does not match its manifest."""


@dataclass
class TokenizeOptions:
    """`tokenize.*` (configs/base/tokenize.yaml holds the defaults and says why), and the tokenizer."""

    tokenizer_path: str
    text_field: str
    group_by: Sequence[str]
    optional_group_keys: Sequence[str]
    missing_group_value: str
    append_eod: bool
    eod_token_id: int | None  # None: the tokenizer's eos token
    add_special_tokens: bool
    dtype: str  # auto: uint16 when the vocabulary fits (megatron's DType.optimal_dtype)
    workers: int  # encoder processes inside one shard's task
    batch_size: int
    progress: bool
    # Curator executor for the per-shard tasks: inline, ray_data, xenna, or inherit (run.executor
    # in `taskseed run`; inline when there is none, e.g. `taskseed tokenize`).
    executor: str
    merge: bool  # false: the manifest lists the per-shard prefixes instead of merged ones
    max_document_chars: int  # longer texts are rejects (file, line, reason); 0: no limit

    @classmethod
    def from_config(
        cls, cfg: Any, tokenizer_path: str, run_executor: str | None = None, **overrides: Any
    ) -> TokenizeOptions:
        """From the full config or its `tokenize` section; `overrides` replace fields."""
        names = [f.name for f in fields(cls) if f.name != "tokenizer_path"]
        values = {**section_settings(cls, cfg, "tokenize", names), **overrides}
        values["tokenizer_path"] = str(tokenizer_path)
        for key in ("group_by", "optional_group_keys"):
            values[key] = tuple(values[key])
        opts = cls(**values)
        if run_executor and opts.executor in (None, "inherit"):
            opts.executor = str(run_executor)
        return opts


def resolve_executor(name: str | None) -> str:
    name = "inline" if name in (None, "", "inherit") else str(name)
    if name not in EXECUTORS:
        raise TokenizeError(f"tokenize.executor={name!r}: use inherit, {', '.join(EXECUTORS)}")
    return name


def megatron_datasets():
    """`megatron.core.datasets.indexed_dataset`, imported without the Transformer Engine/Apex
    warnings that `megatron.core`'s package import prints on CPU machines (irrelevant to datasets)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from megatron.core.datasets import indexed_dataset
    return indexed_dataset


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def resolve_dtype(option: str, vocab_size: int) -> np.dtype:
    DType = megatron_datasets().DType
    if option == "auto":
        return np.dtype(DType.optimal_dtype(vocab_size))
    dtype = np.dtype(option)
    if dtype.kind not in "iu" or np.iinfo(dtype).max < vocab_size - 1:
        raise TokenizeError(f"tokenize.dtype={option!r} cannot hold token ids up to {vocab_size - 1}")
    return dtype


@dataclass(frozen=True)
class ShardSpec:
    """Everything a shard's output is a function of, besides its input file; JSON-able, so it
    travels to Ray workers, and (minus the tokenizer's path) part of every shard's fingerprint."""

    tokenizer_path: str
    tokenizer_sha256: str
    text_field: str
    group_by: tuple[str, ...]
    optional_group_keys: tuple[str, ...]
    missing_group_value: str
    add_special_tokens: bool
    eod_token_id: int | None  # None: no end-of-document token
    dtype: str
    max_document_chars: int = 0

    @classmethod
    def from_json(cls, data: dict) -> ShardSpec:
        data = dict(data)
        for key in ("group_by", "optional_group_keys"):
            data[key] = tuple(data[key])
        return cls(**data)

    def encode_settings(self) -> EncodeSettings:
        return EncodeSettings(
            tokenizer_path=self.tokenizer_path,
            add_special_tokens=self.add_special_tokens,
            eod_token_id=self.eod_token_id,
            dtype=self.dtype,
        )

    def shard_fingerprint(self, path: Path, display: str) -> str:
        shaping = {k: v for k, v in asdict(self).items() if k != "tokenizer_path"}
        return shards.fingerprint(shards.file_fingerprint(path), str(path), display, shaping)


@dataclass
class _PrefixBuilder:
    """One open `IndexedDatasetBuilder` plus the counts the manifest needs."""

    name: str
    group: tuple[str, ...]
    group_keys: tuple[str, ...]
    partial_prefix: Path
    dtype: np.dtype
    documents: int = 0
    tokens: int = 0
    kinds: Counter = field(default_factory=Counter)
    formats: Counter = field(default_factory=Counter)
    builder: object = None

    def open(self) -> None:
        builder_cls = megatron_datasets().IndexedDatasetBuilder
        # The builder wants the scalar type (np.uint16), not a dtype instance: it writes dtype.__name__.
        self.builder = builder_cls(str(self.partial_prefix) + ".bin", dtype=self.dtype.type)

    def add(self, tokens: np.ndarray, kind: str | None, fmt: str | None) -> None:
        # One sequence per document: GPTDataset packs across documents, EOD marks the boundary.
        self.builder.add_document(tokens, [int(tokens.size)])
        self.documents += 1
        self.tokens += int(tokens.size)
        self.kinds[kind or "unknown"] += int(tokens.size)
        self.formats[fmt or "unknown"] += int(tokens.size)

    def add_index(self, prefix: Path, entry: dict) -> None:
        """Append a whole shard prefix (its .idx entries, then its .bin bytes) without decoding it."""
        self.builder.add_index(str(prefix))
        self.documents += int(entry["documents"])
        self.tokens += int(entry["tokens"])
        self.kinds.update({k: int(v) for k, v in entry["kind_tokens"].items()})
        self.formats.update({k: int(v) for k, v in entry["format_tokens"].items()})

    def finalize(self) -> None:
        self.builder.finalize(str(self.partial_prefix) + ".idx")

    def entry(self, path: str) -> dict:
        return {
            "name": self.name,
            "path": path,  # relative to the manifest's folder
            "group": dict(zip(self.group_keys, self.group)),
            "kind": _dominant(self.kinds),
            "kind_tokens": dict(sorted(self.kinds.items())),
            # Tokens per record `format` (multiple_choice, generative; unknown: no format field):
            # what blend.format_quotas weighs, also for a prefix that mixes formats.
            "format": _dominant(self.formats),
            "format_tokens": dict(sorted(self.formats.items())),
            "documents": self.documents,
            "tokens": self.tokens,
            "files": {suffix[1:]: _file_info(Path(str(self.partial_prefix) + suffix)) for suffix in (".bin", ".idx")},
        }


def _file_info(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _dominant(tokens: Counter) -> str:
    """A prefix's kind (or format) from its tokens per value: the one value it holds, "mixed" when
    it holds more than one, "unknown" when its records carry none."""
    known = [k for k in tokens if k != "unknown"]
    if len(known) == 1 and len(tokens) == 1:
        return known[0]
    if not known:
        return "unknown"
    return "mixed"


def _batched(docs: Iterator[Document], size: int) -> Iterator[tuple[list[Document], list[str]]]:
    batch: list[Document] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= size:
            yield batch, [d.text for d in batch]
            batch = []
    if batch:
        yield batch, [d.text for d in batch]


# ---------------------------------------------------------------------------------------------
# One shard (runs inside a Curator stage, on any node)
# ---------------------------------------------------------------------------------------------


def tokenize_shard(
    out_dir: str | Path,
    shard: str,
    path: str | Path,
    display: str,
    shard_fingerprint: str,
    spec: ShardSpec,
    *,
    workers: int = 1,
    batch_size: int = 512,
    encoder: BatchEncoder | None = None,
    progress: bool = False,
) -> dict:
    """Tokenize one input file into `<out>/shards/<shard>/<group>.bin/.idx`, then write its done
    marker `<out>/shards/<shard>.json`; returns the marker.

    The marker records per prefix its group, document/token/kind/format counts and checksums, the file's
    accepted/rejected line counts, every reject (file, line, reason) and the node that ran it.
    """
    from tqdm import tqdm

    out_dir, path = Path(out_dir), Path(path)
    root = out_dir / SHARDS_DIR
    shards.clear_marker(out_dir, shard)  # from here on nothing claims this shard is complete
    partial_dir = root / f".partial-{os.getpid()}-{shard}"
    shutil.rmtree(partial_dir, ignore_errors=True)
    partial_dir.mkdir(parents=True)
    dtype = np.dtype(spec.dtype)
    settings = spec.encode_settings()
    builders: dict[tuple[str, ...], _PrefixBuilder] = {}
    rejects: list[Reject] = []
    counts = Counter(accepted=0, rejected=0)

    def documents() -> Iterator[Document]:
        for item in read_documents(
            path,
            text_field=spec.text_field,
            group_by=spec.group_by,
            optional_group_keys=spec.optional_group_keys,
            missing_group_value=spec.missing_group_value,
            display_name=display,
            max_chars=spec.max_document_chars,
        ):
            if isinstance(item, Reject):
                rejects.append(item)
                counts["rejected"] += 1
            else:
                counts["accepted"] += 1
                yield item

    if workers <= 1 and encoder is None:
        encoder = BatchEncoder(settings)
    bar = tqdm(desc=f"tokenize {shard}", unit="doc", disable=not progress, dynamic_ncols=True, leave=False)
    try:
        for batch, flat, lengths in encode_batches(_batched(documents(), batch_size), settings, workers, encoder):
            offsets = np.concatenate(([0], np.cumsum(lengths)))
            for i, doc in enumerate(batch):
                builder = builders.get(doc.group)
                if builder is None:
                    name = prefix_name(doc.group)
                    builder = builders[doc.group] = _PrefixBuilder(
                        name, doc.group, tuple(spec.group_by), partial_dir / name, dtype
                    )
                    builder.open()
                builder.add(flat[offsets[i] : offsets[i + 1]], doc.kind, doc.format)
            bar.update(len(batch))
        bar.close()
        names = Counter(b.name for b in builders.values())
        clashes = [n for n, c in names.items() if c > 1]
        if clashes:
            raise TokenizeError(f"{display}: groups map to the same prefix name after sanitizing: {', '.join(clashes)}")
        for builder in builders.values():
            builder.finalize()
        entries = [b.entry(f"{SHARDS_DIR}/{shard}/{b.name}") for b in sorted(builders.values(), key=lambda b: b.name)]
        final = root / shard
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial_dir, final)
    finally:
        bar.close()
        shutil.rmtree(partial_dir, ignore_errors=True)
    return shards.write_marker(
        out_dir,
        shard,
        shard_fingerprint,
        {
            "input": {"path": display, **shards.file_fingerprint(path)},
            "inputs": [{"path": display, "accepted": counts["accepted"], "rejected": counts["rejected"]}],
            "prefixes": entries,
            "rejects": [r.to_json() for r in rejects],
            "totals": {
                "prefixes": len(entries),
                "documents": sum(e["documents"] for e in entries),
                "tokens": sum(e["tokens"] for e in entries),
                "rejected": len(rejects),
            },
            "node_id": shards.worker_identity()["node_id"],
        },
    )


# ---------------------------------------------------------------------------------------------
# The driver: plan shards, run the missing ones, merge, verify, write the manifest
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedShard:
    name: str
    path: Path  # absolute: Ray workers need not share the driver's working directory
    display: str  # the path as given, as rejects and the manifest name it
    fingerprint: str


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


def _shard_done(out_dir: Path, shard: PlannedShard) -> bool:
    """Its marker matches what the shard would be made from now, and its prefixes are on disk."""
    marker = shards.read_marker(out_dir, shard.name)
    if marker is None or marker.get("fingerprint") != shard.fingerprint:
        return False
    for entry in marker.get("prefixes", []):
        if "format_tokens" not in entry:
            return False  # written before prefixes counted their formats: redo it, or the merge lacks them
        for kind, info in entry["files"].items():
            file = out_dir / f"{entry['path']}.{kind}"
            if not file.is_file() or file.stat().st_size != info["bytes"]:
                return False
    return True


def _remove_stale(out_dir: Path, planned: set[str]) -> list[str]:
    """Drop leftovers of an interrupted run, the merged prefixes an older manifest vouched for, and
    the shards of input files that are no longer inputs; returns the removed shards' names."""
    root = out_dir / SHARDS_DIR
    for partial in [*out_dir.glob(".partial-*"), *root.glob(".partial-*")]:
        shutil.rmtree(partial, ignore_errors=True)
    manifest = out_dir / MANIFEST_NAME
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
            names = [p["path"] for p in old.get("prefixes", []) if not p.get("shard")]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            names = []
        manifest.unlink()  # from here on nothing in out_dir claims to be complete
        for name in names:
            for suffix in (".idx", ".bin"):  # .idx first: a lone .bin never looks like a dataset
                (out_dir / f"{name}{suffix}").unlink(missing_ok=True)
    removed = set()
    if root.is_dir():
        for item in root.iterdir():
            if item.name.startswith("."):
                continue
            if item.is_file() and item.suffix == ".json" and item.stem not in planned:
                item.unlink()
                removed.add(item.stem)
            elif item.is_dir() and item.name not in planned:
                shutil.rmtree(item, ignore_errors=True)
                removed.add(item.name)
    return sorted(removed)


def _run_shards(
    todo: list[PlannedShard], out_dir: Path, spec: ShardSpec, opts: TokenizeOptions, executor: str, hf_tokenizer
) -> None:
    import pandas as pd
    from nemo_curator.pipeline import Pipeline
    from nemo_curator.tasks import DocumentBatch

    from nemo_taskseed.pipeline.executors import make_executor
    from nemo_taskseed.tokenize.stages import TASK_COLUMNS, TokenizeShardStage

    tasks = [
        DocumentBatch(
            dataset_name=s.name,
            data=pd.DataFrame([[s.name, str(s.path), s.display, s.fingerprint]], columns=TASK_COLUMNS),
            _metadata={"shard": s.name},
        )
        for s in todo
    ]
    inline = executor == "inline"
    stage = TokenizeShardStage(
        out_dir=str(out_dir),
        spec=asdict(spec),
        workers=int(opts.workers),
        encode_batch_size=int(opts.batch_size),
        progress=bool(opts.progress and inline),
        threads_per_reserved_cpu=not inline,
        hf_tokenizer=hf_tokenizer if inline else None,  # reuse the driver's copy in-process; workers load their own
    )
    progress = "tokenize shards" if opts.progress and len(todo) > 1 else None
    Pipeline(name="taskseed_tokenize", stages=[stage]).run(
        make_executor(executor, progress=progress), initial_tasks=tasks
    )


def _merge(out_dir: Path, markers: list[dict], dtype: np.dtype, group_keys: tuple[str, ...]) -> list[dict]:
    """One prefix per group at the top of `out_dir`: the shards' prefixes in shard order."""
    by_name: dict[str, list[dict]] = {}
    for marker in markers:
        for entry in marker["prefixes"]:
            by_name.setdefault(entry["name"], []).append(entry)
    partial_dir = out_dir / f".partial-{os.getpid()}"
    partial_dir.mkdir()
    # add_index runs gc.collect() after every index it reads: over the heap of a process that has
    # imported torch, transformers and Curator that is ~0.5 s a call (hours for 1000s of shards).
    # Frozen objects are skipped by collections, which then only see what the merge allocates.
    gc.freeze()
    try:
        builders = []
        for name in sorted(by_name):
            parts = by_name[name]
            groups = {json.dumps(p["group"], sort_keys=True) for p in parts}
            if len(groups) > 1:
                raise TokenizeError(f"groups map to the same prefix name {name!r} after sanitizing: {sorted(groups)}")
            group = tuple(str(parts[0]["group"][k]) for k in group_keys)
            builder = _PrefixBuilder(name, group, group_keys, partial_dir / name, dtype)
            builder.open()
            for part in parts:
                builder.add_index(out_dir / part["path"], part)
            builder.finalize()
            builders.append(builder)
        return [_publish(builder, out_dir) for builder in builders]
    finally:
        gc.unfreeze()
        shutil.rmtree(partial_dir, ignore_errors=True)


def _publish(builder: _PrefixBuilder, out_dir: Path) -> dict:
    entry = builder.entry(builder.name)
    final = out_dir / builder.name
    # Old .idx goes first and the new .idx arrives last: in between there is never a matching pair.
    (out_dir / f"{builder.name}.idx").unlink(missing_ok=True)
    os.replace(str(builder.partial_prefix) + ".bin", str(final) + ".bin")
    os.replace(str(builder.partial_prefix) + ".idx", str(final) + ".idx")
    return entry


def _shard_entries(markers: list[dict]) -> list[dict]:
    """merge=false: every shard prefix as its own manifest entry, named `<group>@<shard>`.

    `kind` (and `format`) is the whole group's (as the merged prefix would have it), so that a
    blend puts every shard of a group in the same quota group; `kind_tokens` and `format_tokens`
    stay the shard's own.
    """
    group_kinds: dict[str, Counter] = {}
    group_formats: dict[str, Counter] = {}
    for marker in markers:
        for entry in marker["prefixes"]:
            group_kinds.setdefault(entry["name"], Counter()).update(entry["kind_tokens"])
            group_formats.setdefault(entry["name"], Counter()).update(entry["format_tokens"])
    entries = []
    for marker in markers:
        for entry in marker["prefixes"]:
            entries.append(
                {
                    **entry,
                    "name": f"{entry['name']}@{marker['shard']}",
                    "group_name": entry["name"],
                    "shard": marker["shard"],
                    "kind": _dominant(group_kinds[entry["name"]]),
                    "format": _dominant(group_formats[entry["name"]]),
                }
            )
    return sorted(entries, key=lambda e: (e["group_name"], e["shard"]))


def _has_a_line(path: Path) -> bool:
    """Does the file hold at least one non-blank line? (stops at the first one)"""
    with open(path, "rb") as handle:
        return any(line.strip() for line in handle)


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
    executor = resolve_executor(executor or opts.executor)
    out_dir = Path(out_dir).resolve()
    inside = [str(f) for f in files if f.resolve().is_relative_to(out_dir)]
    if inside:  # its shards/ folder would clash with the producing step's markers, and stale cleanup with its files
        raise TokenizeError(
            f"input {inside[0]} is inside the output folder {out_dir}: tokenize into a folder of its own"
        )
    out_dir.mkdir(parents=True, exist_ok=True)

    if hf_tokenizer is None:
        hf_tokenizer = load_hf_tokenizer(opts.tokenizer_path)
    vocab_size = len(hf_tokenizer)
    eod = opts.eod_token_id if opts.eod_token_id is not None else hf_tokenizer.eos_token_id
    if opts.append_eod and eod is None:
        raise TokenizeError(f"tokenizer {opts.tokenizer_path} has no eos token: set tokenize.eod_token_id")
    dtype = resolve_dtype(opts.dtype, vocab_size)
    spec = ShardSpec(
        tokenizer_path=str(Path(opts.tokenizer_path).resolve()),
        tokenizer_sha256=tokenizer_fingerprint(opts.tokenizer_path),
        text_field=str(opts.text_field),
        group_by=tuple(opts.group_by),
        optional_group_keys=tuple(opts.optional_group_keys),
        missing_group_value=str(opts.missing_group_value),
        max_document_chars=int(opts.max_document_chars or 0),
        add_special_tokens=bool(opts.add_special_tokens),
        eod_token_id=int(eod) if opts.append_eod else None,
        dtype=dtype.name,
    )
    planned = sorted(
        (
            PlannedShard(name, f.resolve(), str(f), spec.shard_fingerprint(f.resolve(), str(f)))
            for name, f in zip(shard_names(files), files)
        ),
        key=lambda s: s.name,
    )
    removed = _remove_stale(out_dir, {s.name for s in planned})
    todo = [s for s in planned if not _shard_done(out_dir, s)]
    if todo:
        _run_shards(todo, out_dir, spec, opts, executor, hf_tokenizer)

    markers = []
    for s in planned:
        marker = shards.read_marker(out_dir, s.name)
        if marker is None or marker.get("fingerprint") != s.fingerprint:
            raise TokenizeError(f"shard {s.name} ({s.display}) has no matching done marker after the run")
        markers.append(marker)
    prefixes = _merge(out_dir, markers, dtype, spec.group_by) if opts.merge else _shard_entries(markers)

    rejects = [r for m in markers for r in m["rejects"]]
    if rejects:
        write_lines(out_dir / REJECTS_NAME, (json.dumps(r, ensure_ascii=False) for r in rejects))
    else:
        (out_dir / REJECTS_NAME).unlink(missing_ok=True)
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "created_unix": int(time.time()),
        "tokenizer": {
            "path": spec.tokenizer_path,
            "class": type(hf_tokenizer).__name__,
            "vocab_size": vocab_size,
            "eod_token_id": spec.eod_token_id,
            "add_special_tokens": spec.add_special_tokens,
            "fingerprint_sha256": spec.tokenizer_sha256,
        },
        "dtype": dtype.name,
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
            "seconds": round(time.perf_counter() - started, 3),
        },
        "rejects_file": REJECTS_NAME if rejects else None,
    }
    problems = verify_prefixes(out_dir, manifest)
    if problems:  # the manifest is not written: nothing claims these datasets are good
        raise TokenizeError("read-back check failed:\n  " + "\n  ".join(problems))
    write_json(out_dir / MANIFEST_NAME, manifest)
    todo_names = {s.name for s in todo}
    nodes = Counter(m["node_id"] for m in markers if m["shard"] in todo_names)
    run = {
        "executor": executor,
        "shards": len(planned),
        "run_now": len(todo),
        "finished_before": len(planned) - len(todo),
        "removed_stale": removed,
        "nodes": dict(sorted(nodes.items())),
    }
    return manifest, run


def tokenize_files(
    files: Sequence[Path], out_dir: Path, opts: TokenizeOptions, *, hf_tokenizer=None, executor: str | None = None
) -> dict:
    """Tokenize `files` into `out_dir`; returns the manifest (also written to `manifest.json`).

    `executor` overrides `opts.executor` (inherit means inline here). See `run_tokenize`.
    """
    return run_tokenize(files, out_dir, opts, hf_tokenizer=hf_tokenizer, executor=executor)[0]


def verify_prefixes(out_dir: Path, manifest: dict) -> list[str]:
    """Read every prefix back with megatron-core's `IndexedDataset` and compare with the manifest.

    Checks file sizes and checksums, document and token counts, the dtype, and that every
    document ends with the EOD token. Returns the problems found (empty: all good).
    """
    IndexedDataset = megatron_datasets().IndexedDataset
    problems = []
    dtype = np.dtype(manifest["dtype"])
    eod = manifest["tokenizer"]["eod_token_id"] if manifest.get("append_eod") else None
    for entry in manifest["prefixes"]:
        prefix = Path(out_dir) / entry["path"]
        name = entry["name"]
        for kind, info in entry["files"].items():
            path = Path(f"{prefix}.{kind}")
            if not path.is_file():
                problems.append(f"{name}: {path} is missing")
                continue
            if path.stat().st_size != info["bytes"]:
                problems.append(f"{name}: {path} has {path.stat().st_size} bytes, manifest says {info['bytes']}")
            elif sha256_file(path) != info["sha256"]:
                problems.append(f"{name}: {path} checksum differs from the manifest")
        if problems and problems[-1].startswith(f"{name}:"):
            continue
        dataset = IndexedDataset(str(prefix))
        lengths = np.asarray(dataset.sequence_lengths, dtype=np.int64)
        if dataset.index.dtype != dtype:
            problems.append(f"{name}: dtype {np.dtype(dataset.index.dtype).name}, manifest says {dtype.name}")
        if len(dataset.document_indices) - 1 != entry["documents"]:
            problems.append(
                f"{name}: {len(dataset.document_indices) - 1} documents, manifest says {entry['documents']}"
            )
        if int(lengths.sum()) != entry["tokens"]:
            problems.append(f"{name}: {int(lengths.sum())} tokens, manifest says {entry['tokens']}")
        if eod is not None and lengths.size:
            tokens = np.memmap(f"{prefix}.bin", dtype=dtype, mode="r")
            last = tokens[np.cumsum(lengths) - 1]
            bad = int(np.count_nonzero(last != eod))
            if bad:
                problems.append(f"{name}: {bad} documents do not end with EOD {eod}")
            del tokens
        del dataset
    return problems


def read_manifest(path: Path) -> tuple[dict, Path]:
    """A tokenize manifest and the folder its relative prefix paths resolve against."""
    manifest, path = read_json_artifact(
        path,
        what="tokenize manifest",
        default_name=MANIFEST_NAME,
        hint="run `taskseed tokenize` first",
        error=TokenizeError,
        schema=MANIFEST_SCHEMA,
    )
    return manifest, path.parent
