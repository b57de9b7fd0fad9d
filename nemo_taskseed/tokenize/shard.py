"""One shard: one input file tokenized into `<out>/shards/<shard>/<group>.bin/.idx`, then its done
marker `<out>/shards/<shard>.json` (pipeline/shards.py). Runs inside the Curator stage
(`stages.py`), on any node; the driver (`step.py`) merges from disk.

A shard is built under `<out>/shards/.partial-<pid>-<shard>/`, moved into place, then marked
done, so a killed shard leaves only a hidden partial folder (removed by the next run). Its tokens
depend only on its file and the `ShardSpec`, whatever the executor or worker count.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nemo_taskseed.pipeline import shards
from nemo_taskseed.tokenize.encoder import BatchEncoder, encode_batches
from nemo_taskseed.tokenize.megatron import PrefixBuilder
from nemo_taskseed.tokenize.options import ShardSpec, TokenizeError
from nemo_taskseed.tokenize.records import Document, Reject, prefix_name, read_documents
from nemo_taskseed.utils.jsonl import LineRange

SHARDS_DIR = shards.MARKERS_DIR  # per-shard prefixes and markers live side by side in <out>/shards/


def _batched(docs: Iterator[Document], size: int) -> Iterator[tuple[list[Document], list[str]]]:
    batch: list[Document] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= size:
            yield batch, [d.text for d in batch]
            batch = []
    if batch:
        yield batch, [d.text for d in batch]


class _ShardReader:
    """The file's documents, counting accepted lines and keeping the rejects."""

    def __init__(self, path: Path, display: str, spec: ShardSpec, span: LineRange | None = None):
        self.path, self.display, self.spec, self.span = path, display, spec, span
        self.rejects: list[Reject] = []
        self.counts = Counter(accepted=0, rejected=0)

    def documents(self) -> Iterator[Document]:
        spec = self.spec
        for item in read_documents(
            self.path,
            text_field=spec.text_field,
            group_by=spec.group_by,
            optional_group_keys=spec.optional_group_keys,
            missing_group_value=spec.missing_group_value,
            display_name=self.display,
            max_chars=spec.max_document_chars,
            span=self.span,
        ):
            if isinstance(item, Reject):
                self.rejects.append(item)
                self.counts["rejected"] += 1
            else:
                self.counts["accepted"] += 1
                yield item


def _build_prefixes(
    reader: _ShardReader,
    spec: ShardSpec,
    partial_dir: Path,
    *,
    workers: int,
    batch_size: int,
    encoder: BatchEncoder | None,
    bar,
) -> list[PrefixBuilder]:
    """Every document into the prefix of its group (opened on its first document); finalized."""
    dtype = np.dtype(spec.dtype)
    settings = spec.encode_settings()
    if workers <= 1 and encoder is None:
        encoder = BatchEncoder(settings)
    builders: dict[tuple[str, ...], PrefixBuilder] = {}
    for batch, flat, lengths in encode_batches(_batched(reader.documents(), batch_size), settings, workers, encoder):
        offsets = np.concatenate(([0], np.cumsum(lengths)))
        for i, doc in enumerate(batch):
            builder = builders.get(doc.group)
            if builder is None:
                name = prefix_name(doc.group)
                builder = builders[doc.group] = PrefixBuilder(
                    name, doc.group, tuple(spec.group_by), partial_dir / name, dtype
                )
                builder.open()
            builder.add(flat[offsets[i] : offsets[i + 1]], doc.kind, doc.format)
        bar.update(len(batch))
    bar.close()
    names = Counter(b.name for b in builders.values())
    clashes = [n for n, c in names.items() if c > 1]
    if clashes:
        raise TokenizeError(
            f"{reader.display}: groups map to the same prefix name after sanitizing: {', '.join(clashes)}"
        )
    for builder in builders.values():
        builder.finalize()
    return sorted(builders.values(), key=lambda b: b.name)


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
    span: LineRange | None = None,
) -> dict:
    """Tokenize one input file (or the `span` of one) into `<out>/shards/<shard>/<group>.bin/.idx`, then write its done
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
    reader = _ShardReader(path, display, spec, span)
    bar = tqdm(desc=f"tokenize {shard}", unit="doc", disable=not progress, dynamic_ncols=True, leave=False)
    try:
        builders = _build_prefixes(
            reader, spec, partial_dir, workers=workers, batch_size=batch_size, encoder=encoder, bar=bar
        )
        entries = [b.entry(f"{SHARDS_DIR}/{shard}/{b.name}") for b in builders]
        final = root / shard
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial_dir, final)
    finally:
        bar.close()
        shutil.rmtree(partial_dir, ignore_errors=True)
    counts = reader.counts
    return shards.write_marker(
        out_dir,
        shard,
        shard_fingerprint,
        {
            "input": {"path": display, **shards.file_fingerprint(path)},
            "inputs": [{"path": display, "accepted": counts["accepted"], "rejected": counts["rejected"]}],
            "prefixes": entries,
            "rejects": [r.to_json() for r in reader.rejects],
            "totals": {
                "prefixes": len(entries),
                "documents": sum(e["documents"] for e in entries),
                "tokens": sum(e["tokens"] for e in entries),
                "rejected": len(reader.rejects),
            },
            "node_id": shards.worker_identity()["node_id"],
        },
    )
