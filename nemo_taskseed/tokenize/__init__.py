"""Tokenize curated JSONL into Megatron indexed datasets (.bin/.idx) with a manifest: one shard
per input file, tokenized in parallel as a Curator pipeline, then merged on the driver."""

from nemo_taskseed.tokenize.megatron import (
    MANIFEST_NAME,
    TokenizeError,
    TokenizeOptions,
    read_manifest,
    run_tokenize,
    tokenize_files,
    verify_prefixes,
)

__all__ = [
    "MANIFEST_NAME",
    "TokenizeError",
    "TokenizeOptions",
    "read_manifest",
    "run_tokenize",
    "tokenize_files",
    "verify_prefixes",
]
