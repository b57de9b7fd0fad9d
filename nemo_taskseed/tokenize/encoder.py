"""Batch encoding with a local Hugging Face tokenizer, in-process or in a pool of CPU workers.

The fast (Rust) tokenizer already spreads one batch over all cores, so one process is usually
the fastest choice on a small machine; worker processes pay off when the Python side (reading,
JSON parsing) is the bottleneck. Either way the output is identical and in input order.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nemo_taskseed.errors import UserError


class TokenizerError(UserError):
    """A tokenizer folder that cannot be loaded offline or has no end-of-document token."""


def load_hf_tokenizer(path: str | Path):
    """A Hugging Face tokenizer from a local folder; never reaches the hub."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise TokenizerError(f"tokenizer folder not found: {path}")
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # transformers raises OSError/ValueError/... for a bad folder
        raise TokenizerError(f"cannot load a tokenizer from {path}: {exc}") from exc


def tokenizer_fingerprint(path: str | Path) -> str:
    """sha256 over the folder's tokenizer files: a manifest names exactly which vocabulary it used."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        if name.startswith("tokenizer") or name in {"vocab.json", "merges.txt", "special_tokens_map.json"}:
            digest.update(name.encode())
            digest.update(Path(path, name).read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class EncodeSettings:
    tokenizer_path: str
    add_special_tokens: bool
    eod_token_id: int | None  # None: do not append an end-of-document token
    dtype: str  # numpy dtype name of the written tokens


class BatchEncoder:
    """Encodes a list of texts into one flat token array plus per-document lengths (EOD included).

    Goes straight to the Rust `tokenizers.Tokenizer` when the HF tokenizer exposes one: the
    Python wrapper adds per-call overhead (attention masks, BatchEncoding) we throw away.
    """

    def __init__(self, settings: EncodeSettings, hf_tokenizer=None):
        self.settings = settings
        self.hf_tokenizer = hf_tokenizer if hf_tokenizer is not None else load_hf_tokenizer(settings.tokenizer_path)
        self.backend = getattr(self.hf_tokenizer, "backend_tokenizer", None)
        self.dtype = np.dtype(settings.dtype)

    def encode_ids(self, texts: list[str]) -> list[list[int]]:
        if self.backend is not None:
            # encode_batch_fast skips character offsets, which we never use (tokenizers >= 0.21).
            encode = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)
            return [e.ids for e in encode(texts, add_special_tokens=self.settings.add_special_tokens)]
        return self.hf_tokenizer(texts, add_special_tokens=self.settings.add_special_tokens)["input_ids"]

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = self.encode_ids(texts)
        eod = self.settings.eod_token_id
        extra = 0 if eod is None else 1
        lengths = np.fromiter((len(x) + extra for x in ids), dtype=np.int64, count=len(ids))
        flat = np.empty(int(lengths.sum()), dtype=self.dtype)
        pos = 0
        for doc, length in zip(ids, lengths):
            end = pos + length
            flat[pos : end - extra] = doc
            if extra:
                flat[end - 1] = eod
            pos = end
        return flat, lengths


# Worker-process state: one encoder per process, built once by the pool initializer.
_WORKER_ENCODER: BatchEncoder | None = None


def _init_worker(settings_json: str) -> None:
    global _WORKER_ENCODER
    # Each worker is already one of N processes: Rust threads on top would oversubscribe the cores.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER_ENCODER = BatchEncoder(EncodeSettings(**json.loads(settings_json)))


def _encode_in_worker(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    assert _WORKER_ENCODER is not None
    return _WORKER_ENCODER(texts)


def encode_batches(
    batches: Iterable[tuple[object, list[str]]],
    settings: EncodeSettings,
    workers: int,
    encoder: BatchEncoder | None = None,
) -> Iterator[tuple[object, np.ndarray, np.ndarray]]:
    """Yield `(tag, flat_tokens, lengths)` per `(tag, texts)` batch, in input order.

    With `workers > 1` at most `2 * workers` batches are in flight, so memory stays bounded
    however large the input is.
    """
    if workers <= 1:
        encoder = encoder or BatchEncoder(settings)
        for tag, texts in batches:
            flat, lengths = encoder(texts)
            yield tag, flat, lengths
        return
    settings_json = json.dumps(settings.__dict__)
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(settings_json,)) as pool:
        in_flight: deque[tuple[object, Future]] = deque()
        for tag, texts in batches:
            in_flight.append((tag, pool.submit(_encode_in_worker, texts)))
            if len(in_flight) >= 2 * workers:
                done_tag, future = in_flight.popleft()
                yield done_tag, *future.result()
        while in_flight:
            done_tag, future = in_flight.popleft()
            yield done_tag, *future.result()
