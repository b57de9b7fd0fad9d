"""Tokenize curated JSONL into Megatron indexed datasets (.bin/.idx) with a manifest."""

from nemo_taskseed.tokenize.megatron import (
    MANIFEST_NAME,
    TokenizeError,
    TokenizeOptions,
    read_manifest,
    tokenize_files,
    verify_prefixes,
)

__all__ = ["MANIFEST_NAME", "TokenizeError", "TokenizeOptions", "read_manifest", "tokenize_files", "verify_prefixes"]
