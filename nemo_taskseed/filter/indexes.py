"""The benchmark indexes the decontamination checks read, built once per filter folder.

`<work>/decontam_index.pkl` (the n-gram index, with `decontam_index.json` describing its coverage)
and `<work>/semantic_index.*` (every scored benchmark row's views embedded, a faiss index) are
rebuilt only when their settings change; every worker loads them instead of rebuilding. The
benchmark embeddings are also kept in the user cache, since they are the same in every run.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.semantic.check import SemanticSettings
from nemo_taskseed.filter.settings import FilterSettings, decontam_benchmarks
from nemo_taskseed.pipeline import shards
from nemo_taskseed.utils.jsonl import atomic_path, write_json


@dataclass(frozen=True)
class Indexes:
    """Where the indexes are (None: not built) and their description for the reports
    (`info`: the n-gram index's sizes and coverage, with `semantic`: the semantic index's)."""

    decontam_path: str | None
    semantic_prefix: str | None
    info: dict[str, Any]


def build_indexes(settings: FilterSettings, work: Path) -> Indexes:
    """The indexes the configuration needs (none when decontamination is off)."""
    dc = settings.raw["decontam"]
    if not settings.decontam_on:
        return Indexes(None, None, {"semantic": {}})
    index_path, index_info = ensure_decontam_index(dc, work)
    coverage = index_info.get("coverage") or []
    if not any(c.get("loaded") for c in coverage) and not dc.get("allow_empty"):
        missing = ", ".join(f"{c['benchmark']} {c['split']}" for c in coverage[:6]) + (
            " ..." if len(coverage) > 6 else ""
        )
        raise UserError(
            f"decontamination could not load any of the {len(coverage)} scored benchmark splits ({missing}; "
            f"source={dc['source']}, mirror={dc.get('mirror')}): nothing would be checked. Point "
            "filter.decontam.mirror at a mirror that holds them, allow the hub (filter.decontam.source=hub), or "
            "accept an unchecked run with filter.decontam.allow_empty=true"
        )
    prefix, semantic = (
        ensure_semantic_index(settings.semantic, work, index_info) if settings.semantic_decontam_on else (None, {})
    )
    return Indexes(index_path, prefix, {**index_info, "semantic": semantic})


def ensure_decontam_index(dc: dict[str, Any], work: Path) -> tuple[str, dict[str, Any]]:
    """Build the benchmark index once (reused while its settings are unchanged); returns its pickle's
    path and its description (sizes, per-split coverage) for the contamination report."""
    from nemo_taskseed.filter.decontam import build_index

    settings = {
        k: dc.get(k)
        for k in (
            "benchmarks",
            "extra_benchmarks",
            "source",
            "mirror",
            "include_paths",
            "ngram_size",
            "short_min_words",
            "unordered",
        )
    }
    # An index built before rendered prompts were indexed, before the semantic views, or before the
    # punctuation-as-space variant of every string, is rebuilt.
    settings["index_views"] = ["raw", "rendered", "semantic:prompt,core,qa", "punctuation:deleted,spaced"]
    fp = shards.fingerprint(settings)
    pkl, info_path = work / "decontam_index.pkl", work / "decontam_index.json"
    views_path = work / "decontam_views.json"
    if pkl.is_file() and info_path.is_file() and views_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("fingerprint") == fp:
            return str(pkl), info
    built = build_index(
        decontam_benchmarks(dc),
        source=dc["source"],
        mirror=dc.get("mirror"),
        ngram_size=int(dc["ngram_size"]),
        short_min_words=int(dc["short_min_words"]),
        unordered=bool(dc["unordered"]),
        include_paths=list(dc.get("include_paths") or []),
        progress=True,
    )
    work.mkdir(parents=True, exist_ok=True)
    with atomic_path(pkl) as tmp, open(tmp, "wb") as handle:
        pickle.dump(built.index, handle, protocol=pickle.HIGHEST_PROTOCOL)
    # The rows' views, for the semantic index (built from them without reading the benchmarks again).
    write_json(views_path, {"views": built.views})
    info = {
        "fingerprint": fp,
        "index_ngrams": len(built.index),
        "index_short_strings": built.index.n_short,
        "coverage": [c.to_dict() for c in built.coverage],
    }
    write_json(info_path, info)
    return str(pkl), info


def ensure_semantic_index(sem: SemanticSettings, work: Path, index_info: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Embed every indexed benchmark row once (reused while the benchmark index and the model
    settings are unchanged); returns the faiss index's path prefix and its description."""
    from nemo_taskseed.filter.decontam.ngrams import BenchmarkRow
    from nemo_taskseed.filter.semantic import Embedder, SemanticIndex

    fp = shards.fingerprint(index_info.get("fingerprint"), sem.model, sem.max_seq_length)
    prefix, info_path = work / "semantic_index", work / "semantic_index.info.json"
    if prefix.with_suffix(".faiss").is_file() and info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("fingerprint") == fp:
            return str(prefix), info
    entries = json.loads((work / "decontam_views.json").read_text(encoding="utf-8"))["views"]
    rows = [BenchmarkRow(bench, split, int(row)) for bench, split, row, *_ in entries]
    texts = [e[4] for e in entries]
    started = time.monotonic()
    embedder = Embedder(sem.model, sem.max_seq_length, sem.batch_size, sem.device)
    vectors, cached = cached_embeddings(embedder, texts)
    SemanticIndex(rows, texts, vectors, [e[3] for e in entries]).save(prefix)
    scored_rows = sum(c.get("rows", 0) for c in index_info.get("coverage", []))
    distinct_rows = len(set(rows))
    info = {
        "fingerprint": fp,
        "rows": distinct_rows,
        "vectors": len(rows),
        "views": dict(Counter(e[3] for e in entries)),
        "rows_without_text": scored_rows - distinct_rows,
        "model": embedder.model,
        "embed_seconds": round(time.monotonic() - started, 1),
        "from_cache": cached,
    }
    write_json(info_path, info)
    return str(prefix), info


def cached_embeddings(embedder: Any, texts: list[str]) -> tuple[Any, bool]:
    """The texts' embeddings, kept in the user cache (`cache_dir("embeddings")`) under a hash of the
    model and the texts: the benchmark rows are the same in every run and embedding them on a CPU
    costs minutes (~25 rows/s on 2 busy cores), so a new output folder does not pay again."""
    import numpy as np

    from nemo_taskseed.paths import cache_dir

    digest = hashlib.sha256(
        "\n".join([Path(embedder.path).name, str(embedder.max_seq_length), *texts]).encode("utf-8")
    ).hexdigest()[:32]
    path = cache_dir("embeddings") / f"{digest}.npy"
    if path.is_file():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            return vectors, True
    vectors = embedder.embed(texts)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, vectors)
    return vectors, False
