"""What a tokenize run is asked to do: `tokenize.*` as `TokenizeOptions` on the driver, and the
`ShardSpec` every shard is tokenized with (the options resolved against the tokenizer)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from nemo_taskseed.config import section_settings
from nemo_taskseed.errors import UserError
from nemo_taskseed.pipeline import shards
from nemo_taskseed.tokenize.encoder import EncodeSettings

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
    shard_bytes: int  # a larger input file is cut at line ends into shards of about this size; 0: no cut

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
        if not isinstance(opts.shard_bytes, int) or opts.shard_bytes < 0:
            raise TokenizeError(f"tokenize.shard_bytes must be an integer >= 0, got {opts.shard_bytes!r}")
        if run_executor and opts.executor in (None, "inherit"):
            opts.executor = str(run_executor)
        return opts


def resolve_executor(name: str | None) -> str:
    name = "inline" if name in (None, "", "inherit") else str(name)
    if name not in EXECUTORS:
        raise TokenizeError(f"tokenize.executor={name!r}: use inherit, {', '.join(EXECUTORS)}")
    return name


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

    def shard_fingerprint(self, path: Path, display: str, span: list[int] | None = None) -> str:
        shaping = {k: v for k, v in asdict(self).items() if k != "tokenizer_path"}
        where = [span] if span else []  # a piece of a larger file: its byte range too
        return shards.fingerprint(shards.file_fingerprint(path), str(path), display, shaping, *where)
