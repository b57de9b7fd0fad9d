"""The Curator stage that tokenizes one shard (one input file) per task.

A task is a `DocumentBatch` with one row per shard: its name, the absolute path of its input file,
the path as the user gave it (for rejects) and its fingerprint. The stage writes the shard's
prefixes and done marker itself (see `shard.tokenize_shard`) and passes on only a one-row
summary, so no token or record ever travels back to the driver: the driver merges from disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import DocumentBatch

from nemo_taskseed.pipeline.shards import ray_task_spec
from nemo_taskseed.tokenize.encoder import BatchEncoder
from nemo_taskseed.tokenize.options import ShardSpec
from nemo_taskseed.tokenize.shard import tokenize_shard
from nemo_taskseed.utils.jsonl import LineRange

# span: [start byte, end byte, first line] of a piece of a larger file, or None (the whole file)
TASK_COLUMNS = ["shard", "path", "display", "fingerprint", "span"]
RESULT_COLUMNS = ["shard", "documents", "tokens", "rejected", "node_id"]


def shard_task(shard: str, path: str, display: str, fingerprint: str, span: list[int] | None = None) -> DocumentBatch:
    """One shard (one input file, or a piece of one) as a Curator task."""
    return DocumentBatch(
        dataset_name=shard,
        data=pd.DataFrame([[shard, path, display, fingerprint, span]], columns=TASK_COLUMNS),
        _metadata={"shard": shard},
    )


@dataclass
class TokenizeShardStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Tokenize each shard of the task into `<out>/shards/<shard>/`, then write its done marker.

    The tokenizer is loaded on first use in the worker (or handed over by the inline executor),
    not in `setup()`: this stage is a plain Ray Data task, one per shard, on any node.
    """

    out_dir: str = "."
    spec: dict[str, Any] = field(default_factory=dict)  # options.ShardSpec as a dict
    workers: int = 1  # encoder processes inside this task (tokenize.workers)
    # Documents per encoder call. Not `batch_size`: that is ProcessingStage's tasks per call, which
    # Ray Data uses to bundle shards (512 would put every shard into one task on one node).
    encode_batch_size: int = 512
    progress: bool = False
    # On Ray a task reserved `workers` CPUs, but the fast tokenizer spreads every batch over all of
    # the node's cores (Rust threads): tasks sharing a node would oversubscribe it, and a 1-CPU
    # task would quietly borrow its neighbours' cores. True: one thread per reserved CPU (the
    # encoder pool's processes are single-threaded already). The inline executor owns its process.
    threads_per_reserved_cpu: bool = False
    hf_tokenizer: Any = field(default=None, repr=False)
    name: str = "tokenize_shard"
    resources: Resources = field(default_factory=lambda: Resources(cpus=1.0))

    def __post_init__(self) -> None:
        self.resources = Resources(cpus=float(max(1, int(self.workers))))
        self._encoder = None

    def ray_stage_spec(self) -> dict[str, Any]:
        return ray_task_spec(super().ray_stage_spec())  # shards spread over every node

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], TASK_COLUMNS

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], RESULT_COLUMNS

    def _get_encoder(self, spec):
        if self.workers > 1:
            return None  # encode_batches starts its own worker pool
        if self._encoder is None:
            self._encoder = BatchEncoder(spec.encode_settings(), self.hf_tokenizer)
        return self._encoder

    def process(self, task: DocumentBatch) -> DocumentBatch:
        spec = ShardSpec.from_json(self.spec)
        if self.threads_per_reserved_cpu:
            os.environ["TOKENIZERS_PARALLELISM"] = "false"  # read by the tokenizer on every call
        rows = []
        df = task.to_pandas()
        for shard, path, display, fingerprint, span in zip(
            df["shard"], df["path"], df["display"], df["fingerprint"], df["span"]
        ):
            marker = tokenize_shard(
                self.out_dir,
                shard,
                path,
                display,
                fingerprint,
                spec,
                span=LineRange(*(int(v) for v in span)) if span is not None and len(span) else None,
                workers=self.workers,
                batch_size=self.encode_batch_size,
                encoder=self._get_encoder(spec),
                progress=self.progress,
            )
            totals = marker["totals"]
            rows.append([shard, totals["documents"], totals["tokens"], totals["rejected"], marker["node_id"]])
        return DocumentBatch(
            dataset_name=task.dataset_name,
            data=pd.DataFrame(rows, columns=RESULT_COLUMNS),
            _metadata=task._metadata,
            _stage_perf=task._stage_perf,
        )
