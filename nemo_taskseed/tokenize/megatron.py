"""Megatron indexed datasets on disk (`<prefix>.bin` / `<prefix>.idx`): written with megatron-core's
`IndexedDatasetBuilder`, merged, and read back with its `IndexedDataset`.

    PrefixBuilder     one prefix being written, with the counts the manifest needs: documents
                      added one by one (a shard, `shard.py`) or whole shard prefixes appended
                      without decoding them (`merge_prefixes`)
    merge_prefixes    merge=true: the shards' prefixes of a group concatenated in shard order,
                      built under `<out>/.partial-<pid>/` and moved into place `.idx` last
    shard_entries     merge=false: every shard prefix as its own manifest entry
    verify_prefixes   the read-back check of a manifest's prefixes (sizes, checksums, counts, EOD)
    read_manifest     a tokenize manifest (`manifest.json`, written by step.py) for its readers
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nemo_taskseed.tokenize.options import TokenizeError
from nemo_taskseed.utils.jsonl import read_json_artifact

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = "taskseed.tokenize/1"


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


@dataclass
class PrefixBuilder:
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
            "kind": dominant(self.kinds),
            "kind_tokens": dict(sorted(self.kinds.items())),
            # Tokens per record `format` (multiple_choice, generative; unknown: no format field):
            # what blend.format_quotas weighs, also for a prefix that mixes formats.
            "format": dominant(self.formats),
            "format_tokens": dict(sorted(self.formats.items())),
            "documents": self.documents,
            "tokens": self.tokens,
            "files": {suffix[1:]: _file_info(Path(str(self.partial_prefix) + suffix)) for suffix in (".bin", ".idx")},
        }


def _file_info(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def dominant(tokens: Counter) -> str:
    """A prefix's kind (or format) from its tokens per value: the one value it holds, "mixed" when
    it holds more than one, "unknown" when its records carry none."""
    known = [k for k in tokens if k != "unknown"]
    if len(known) == 1 and len(tokens) == 1:
        return known[0]
    if not known:
        return "unknown"
    return "mixed"


def prefixes_on_disk(out_dir: Path, marker: dict) -> bool:
    """Are the prefixes a shard's marker lists there, with the sizes it recorded? (A marker written
    before prefixes counted their formats is not complete either: the merge would lack them.)"""
    for entry in marker.get("prefixes", []):
        if "format_tokens" not in entry:
            return False
        for kind, info in entry["files"].items():
            file = Path(out_dir) / f"{entry['path']}.{kind}"
            if not file.is_file() or file.stat().st_size != info["bytes"]:
                return False
    return True


def merge_prefixes(out_dir: Path, markers: list[dict], dtype: np.dtype, group_keys: tuple[str, ...]) -> list[dict]:
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
            builder = PrefixBuilder(name, group, group_keys, partial_dir / name, dtype)
            builder.open()
            for part in parts:
                builder.add_index(out_dir / part["path"], part)
            builder.finalize()
            builders.append(builder)
        return [_publish(builder, out_dir) for builder in builders]
    finally:
        gc.unfreeze()
        shutil.rmtree(partial_dir, ignore_errors=True)


def _publish(builder: PrefixBuilder, out_dir: Path) -> dict:
    entry = builder.entry(builder.name)
    final = out_dir / builder.name
    # Old .idx goes first and the new .idx arrives last: in between there is never a matching pair.
    (out_dir / f"{builder.name}.idx").unlink(missing_ok=True)
    os.replace(str(builder.partial_prefix) + ".bin", str(final) + ".bin")
    os.replace(str(builder.partial_prefix) + ".idx", str(final) + ".idx")
    return entry


def shard_entries(markers: list[dict]) -> list[dict]:
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
                    "kind": dominant(group_kinds[entry["name"]]),
                    "format": dominant(group_formats[entry["name"]]),
                }
            )
    return sorted(entries, key=lambda e: (e["group_name"], e["shard"]))


def _file_problems(name: str, prefix: Path, files: dict) -> list[str]:
    """The prefix's files against the manifest: present, of its size and checksum."""
    problems = []
    for kind, info in files.items():
        path = Path(f"{prefix}.{kind}")
        if not path.is_file():
            problems.append(f"{name}: {path} is missing")
            continue
        if path.stat().st_size != info["bytes"]:
            problems.append(f"{name}: {path} has {path.stat().st_size} bytes, manifest says {info['bytes']}")
        elif sha256_file(path) != info["sha256"]:
            problems.append(f"{name}: {path} checksum differs from the manifest")
    return problems


def _dataset_problems(name: str, prefix: Path, entry: dict, dtype: np.dtype, eod: int | None) -> list[str]:
    """The prefix as megatron-core reads it against the manifest: dtype, documents, tokens, EOD."""
    problems = []
    dataset = megatron_datasets().IndexedDataset(str(prefix))
    lengths = np.asarray(dataset.sequence_lengths, dtype=np.int64)
    if dataset.index.dtype != dtype:
        problems.append(f"{name}: dtype {np.dtype(dataset.index.dtype).name}, manifest says {dtype.name}")
    if len(dataset.document_indices) - 1 != entry["documents"]:
        problems.append(f"{name}: {len(dataset.document_indices) - 1} documents, manifest says {entry['documents']}")
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


def verify_prefixes(out_dir: Path, manifest: dict) -> list[str]:
    """Read every prefix back with megatron-core's `IndexedDataset` and compare with the manifest.

    Checks file sizes and checksums, document and token counts, the dtype, and that every
    document ends with the EOD token. Returns the problems found (empty: all good).
    """
    problems = []
    dtype = np.dtype(manifest["dtype"])
    eod = manifest["tokenizer"]["eod_token_id"] if manifest.get("append_eod") else None
    for entry in manifest["prefixes"]:
        prefix = Path(out_dir) / entry["path"]
        found = _file_problems(entry["name"], prefix, entry["files"])
        problems += found or _dataset_problems(entry["name"], prefix, entry, dtype, eod)
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
