"""Curated JSONL -> Megatron indexed datasets (`<prefix>.bin` / `<prefix>.idx`), one prefix per group.

Written with megatron-core's `IndexedDatasetBuilder` and read back with its `IndexedDataset`.

Crash safety: every prefix is built under `<out>/.partial-<pid>/` and only moved into place
after it is finalized and read back; the `.idx` is moved last, and `manifest.json` (written
atomically at the very end) is the only record of what is complete. A killed run therefore
leaves at most a hidden partial folder (removed by the next run), never a `.bin`/`.idx` pair that
looks complete but is not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nemo_taskseed.errors import UserError
from nemo_taskseed.utils.jsonl import read_json_artifact, write_json
from nemo_taskseed.tokenize.encoder import (
    BatchEncoder,
    EncodeSettings,
    encode_batches,
    load_hf_tokenizer,
    tokenizer_fingerprint,
)
from nemo_taskseed.tokenize.records import Document, Reject, prefix_name, read_documents

MANIFEST_NAME = "manifest.json"
REJECTS_NAME = "rejects.jsonl"
MANIFEST_SCHEMA = "taskseed.tokenize/1"


class TokenizeError(UserError):
    """Nothing usable to tokenize, or a written dataset that does not match its manifest."""


@dataclass
class TokenizeOptions:
    tokenizer_path: str
    text_field: str = "text"
    group_by: Sequence[str] = ("family", "variant")
    optional_group_keys: Sequence[str] = ("variant",)
    missing_group_value: str = "all"
    append_eod: bool = True
    eod_token_id: int | None = None  # None: the tokenizer's eos token
    add_special_tokens: bool = False
    dtype: str = "auto"  # auto: uint16 when the vocabulary fits (megatron's DType.optimal_dtype)
    workers: int = 1
    batch_size: int = 512
    progress: bool = True

    @classmethod
    def from_config(cls, section, tokenizer_path: str) -> "TokenizeOptions":
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in dict(section).items() if k in known}
        values["tokenizer_path"] = str(tokenizer_path)
        for key in ("group_by", "optional_group_keys"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


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
    builder: object = None

    def open(self) -> None:
        builder_cls = megatron_datasets().IndexedDatasetBuilder
        # The builder wants the scalar type (np.uint16), not a dtype instance: it writes dtype.__name__.
        self.builder = builder_cls(str(self.partial_prefix) + ".bin", dtype=self.dtype.type)

    def add(self, tokens: np.ndarray, kind: str | None) -> None:
        # One sequence per document: GPTDataset packs across documents, EOD marks the boundary.
        self.builder.add_document(tokens, [int(tokens.size)])
        self.documents += 1
        self.tokens += int(tokens.size)
        self.kinds[kind or "unknown"] += int(tokens.size)

    def finalize(self) -> None:
        self.builder.finalize(str(self.partial_prefix) + ".idx")


def _iter_inputs(files: Sequence[Path], opts: TokenizeOptions, rejects: list[Reject],
                 per_file: dict[str, Counter]) -> Iterator[Document]:
    for path in files:
        counts = per_file.setdefault(str(path), Counter())
        for item in read_documents(
            path, text_field=opts.text_field, group_by=opts.group_by,
            optional_group_keys=opts.optional_group_keys, missing_group_value=opts.missing_group_value,
        ):
            if isinstance(item, Reject):
                rejects.append(item)
                counts["rejected"] += 1
            else:
                counts["accepted"] += 1
                yield item


def _batched(docs: Iterator[Document], size: int) -> Iterator[tuple[list[Document], list[str]]]:
    batch: list[Document] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= size:
            yield batch, [d.text for d in batch]
            batch = []
    if batch:
        yield batch, [d.text for d in batch]


def _remove_stale(out_dir: Path) -> None:
    """Drop leftovers of an interrupted run and the prefixes an older manifest vouched for."""
    for partial in out_dir.glob(".partial-*"):
        shutil.rmtree(partial, ignore_errors=True)
    manifest = out_dir / MANIFEST_NAME
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
            names = [p["path"] for p in old.get("prefixes", [])]
        except (json.JSONDecodeError, KeyError, TypeError):
            names = []
        manifest.unlink()  # from here on nothing in out_dir claims to be complete
        for name in names:
            for suffix in (".idx", ".bin"):  # .idx first: a lone .bin never looks like a dataset
                (out_dir / f"{name}{suffix}").unlink(missing_ok=True)


def tokenize_files(files: Sequence[Path], out_dir: Path, opts: TokenizeOptions, *, hf_tokenizer=None) -> dict:
    """Tokenize `files` into `out_dir`; returns the manifest (also written to `manifest.json`).

    `hf_tokenizer`: the already loaded tokenizer of `opts.tokenizer_path` (saves a reload, ~1-3 s).
    """
    from tqdm import tqdm

    files = [Path(f) for f in files]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise TokenizeError(f"input file(s) not found: {', '.join(missing)}")
    if not files:
        raise TokenizeError("no input files to tokenize")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale(out_dir)

    if hf_tokenizer is None:
        hf_tokenizer = load_hf_tokenizer(opts.tokenizer_path)
    vocab_size = len(hf_tokenizer)
    eod = opts.eod_token_id if opts.eod_token_id is not None else hf_tokenizer.eos_token_id
    if opts.append_eod and eod is None:
        raise TokenizeError(f"tokenizer {opts.tokenizer_path} has no eos token: set tokenize.eod_token_id")
    dtype = resolve_dtype(opts.dtype, vocab_size)
    settings = EncodeSettings(
        tokenizer_path=str(opts.tokenizer_path), add_special_tokens=bool(opts.add_special_tokens),
        eod_token_id=int(eod) if opts.append_eod else None, dtype=dtype.name,
    )

    partial_dir = out_dir / f".partial-{os.getpid()}"
    partial_dir.mkdir()
    builders: dict[tuple[str, ...], _PrefixBuilder] = {}
    rejects: list[Reject] = []
    per_file: dict[str, Counter] = {}
    started = time.perf_counter()
    docs = _iter_inputs(files, opts, rejects, per_file)
    encoder = BatchEncoder(settings, hf_tokenizer) if opts.workers <= 1 else None
    progress = tqdm(desc="tokenize", unit="doc", disable=not opts.progress, dynamic_ncols=True)
    try:
        for batch, flat, lengths in encode_batches(_batched(docs, opts.batch_size), settings, opts.workers, encoder):
            offsets = np.concatenate(([0], np.cumsum(lengths)))
            for i, doc in enumerate(batch):
                builder = builders.get(doc.group)
                if builder is None:
                    name = prefix_name(doc.group)
                    builder = builders[doc.group] = _PrefixBuilder(
                        name, doc.group, tuple(opts.group_by), partial_dir / name, dtype)
                    builder.open()
                builder.add(flat[offsets[i]:offsets[i + 1]], doc.kind)
            progress.update(len(batch))
        progress.close()
        names = Counter(b.name for b in builders.values())
        clashes = [n for n, c in names.items() if c > 1]
        if clashes:
            raise TokenizeError(f"groups map to the same prefix name after sanitizing: {', '.join(clashes)}")
        for builder in builders.values():
            builder.finalize()
        prefixes = [_publish(builder, out_dir) for builder in sorted(builders.values(), key=lambda b: b.name)]
    finally:
        progress.close()
        shutil.rmtree(partial_dir, ignore_errors=True)

    if rejects:
        with open(out_dir / REJECTS_NAME, "w") as handle:
            for reject in rejects:
                handle.write(json.dumps(reject.to_json(), ensure_ascii=False) + "\n")
    else:
        (out_dir / REJECTS_NAME).unlink(missing_ok=True)
    elapsed = time.perf_counter() - started
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "created_unix": int(time.time()),
        "tokenizer": {
            "path": str(Path(opts.tokenizer_path).resolve()),
            "class": type(hf_tokenizer).__name__,
            "vocab_size": vocab_size,
            "eod_token_id": settings.eod_token_id,
            "add_special_tokens": settings.add_special_tokens,
            "fingerprint_sha256": tokenizer_fingerprint(opts.tokenizer_path),
        },
        "dtype": dtype.name,
        "append_eod": bool(opts.append_eod),
        "text_field": opts.text_field,
        "group_by": list(opts.group_by),
        "prefixes": prefixes,
        "inputs": [{"path": path, **{k: int(v) for k, v in counts.items()}} for path, counts in per_file.items()],
        "totals": {
            "prefixes": len(prefixes),
            "documents": sum(p["documents"] for p in prefixes),
            "tokens": sum(p["tokens"] for p in prefixes),
            "rejected": len(rejects),
            "seconds": round(elapsed, 3),
        },
        "rejects_file": REJECTS_NAME if rejects else None,
    }
    problems = verify_prefixes(out_dir, manifest)
    if problems:  # the manifest is not written: nothing claims these datasets are good
        raise TokenizeError("read-back check failed:\n  " + "\n  ".join(problems))
    write_json(out_dir / MANIFEST_NAME, manifest)
    return manifest


def _publish(builder: _PrefixBuilder, out_dir: Path) -> dict:
    final = out_dir / builder.name
    entry = {
        "name": builder.name,
        "path": builder.name,  # relative to the manifest's folder
        "group": dict(zip(builder.group_keys, builder.group)),
        "kind": _dominant_kind(builder.kinds),
        "kind_tokens": dict(builder.kinds),
        "documents": builder.documents,
        "tokens": builder.tokens,
        "files": {},
    }
    for suffix in (".bin", ".idx"):
        src = Path(str(builder.partial_prefix) + suffix)
        entry["files"][suffix[1:]] = {"bytes": src.stat().st_size, "sha256": sha256_file(src)}
    # Old .idx goes first and the new .idx arrives last: in between there is never a matching pair.
    (out_dir / f"{builder.name}.idx").unlink(missing_ok=True)
    os.replace(str(builder.partial_prefix) + ".bin", str(final) + ".bin")
    os.replace(str(builder.partial_prefix) + ".idx", str(final) + ".idx")
    return entry


def _dominant_kind(kinds: Counter) -> str:
    """The group's kind for blend quotas; "mixed" when a prefix holds more than one."""
    known = [k for k in kinds if k != "unknown"]
    if len(known) == 1 and len(kinds) == 1:
        return known[0]
    if not known:
        return "unknown"
    return "mixed"


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


def read_manifest(path: Path) -> tuple[dict, Path]:
    """A tokenize manifest and the folder its relative prefix paths resolve against."""
    manifest, path = read_json_artifact(
        path, what="tokenize manifest",
        default_name=MANIFEST_NAME, hint="run `taskseed tokenize` first",
        error=TokenizeError, schema=MANIFEST_SCHEMA)
    return manifest, path.parent
