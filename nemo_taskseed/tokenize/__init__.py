"""Tokenize curated JSONL into Megatron indexed datasets (.bin/.idx) with a manifest: one shard
per input file, tokenized in parallel as a Curator pipeline, then merged on the driver.

    options.py    TokenizeOptions (`tokenize.*`), TokenizeError, the ShardSpec every shard uses
    records.py    JSONL lines -> documents (text, group) or rejects (file, line, reason)
    encoder.py    texts -> token ids with a local Hugging Face tokenizer, in-process or in workers
    megatron.py   megatron-core datasets on disk: build, merge, read back; the manifest's reader
    shard.py      one shard: one input file -> its prefixes and done marker (the worker)
    stages.py     the Curator stage that runs `shard.tokenize_shard`, one task per shard
    step.py       the driver: inputs, shard plan (pipeline/driver.py), merge, manifest
"""

from nemo_taskseed.tokenize.megatron import MANIFEST_NAME, read_manifest, verify_prefixes
from nemo_taskseed.tokenize.options import TokenizeError, TokenizeOptions
from nemo_taskseed.tokenize.step import run_tokenize, tokenize_files

__all__ = [
    "MANIFEST_NAME",
    "TokenizeError",
    "TokenizeOptions",
    "read_manifest",
    "run_tokenize",
    "tokenize_files",
    "verify_prefixes",
]
