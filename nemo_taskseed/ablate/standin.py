"""A stand-in for the pretraining part of a blend, for machines that have no pretraining corpus.

A real ablation mixes the synthetic data into the base blend's pretraining prefixes (a cluster's
web/code/books datasets, `blend.existing`). This machine has none and no hub, so the ablation
loop's non-target part is built here from Python's own reference documentation (the standard
library's `pydoc_data.topics`: ~80 topics, ~465k characters of English prose about the language),
one document per topic, tokenized with the synthetic data's tokenizer into one Megatron prefix
(kept in the cache folder: the same for every ablation with that tokenizer).

It is NOT a pretraining corpus. An ablation against it tests the hand-off (plan -> data loader ->
checkpoints -> eval -> report), not whether the data helps; every plan that uses it says so in
its notes, and the report repeats it.
"""

from __future__ import annotations

import hashlib
import json

from omegaconf import OmegaConf

from nemo_taskseed.config import to_container

STANDIN_NAME = "standin_pydoc"
STANDIN_NOTE = (
    "the pretraining part is a STAND-IN (Python's reference docs, pydoc_data.topics), not a pretraining "
    "corpus: these arms test the hand-off, not the science"
)


def standin_documents() -> list[dict]:
    """One JSONL record per pydoc topic, in topic order (the stdlib's text: the same bytes every run)."""
    from pydoc_data.topics import topics

    return [
        {"id": f"{STANDIN_NAME}:{name}", "text": text.strip(), "family": STANDIN_NAME, "kind": "pretraining"}
        for name, text in sorted(topics.items())
        if text.strip()
    ]


def build_standin(tokenize_section, tokenizer: str) -> dict:
    """The stand-in tokenized with `tokenizer` (the synthetic data's) under the cache folder, once
    per tokenizer, text and tokenize settings; returns the existing-blend entry list
    `{datasets: [{prefix, weight}]}` that `blend.existing` takes."""
    from nemo_taskseed.paths import cache_dir
    from nemo_taskseed.tokenize.encoder import tokenizer_fingerprint
    from nemo_taskseed.tokenize.megatron import read_manifest
    from nemo_taskseed.tokenize.step import tokenize_inputs

    section = OmegaConf.merge(
        tokenize_section,
        {"tokenizer": tokenizer, "group_by": ["family"], "optional_group_keys": [], "merge": True, "progress": False},
    )
    text = "".join(json.dumps(doc, ensure_ascii=False) + "\n" for doc in standin_documents())
    key = hashlib.sha256(
        json.dumps([text, tokenizer_fingerprint(tokenizer), to_container(section)], sort_keys=True).encode()
    ).hexdigest()[:16]
    folder = cache_dir("standin", key)
    if not (folder / "tokenized" / "manifest.json").is_file():
        source = folder / "input" / f"{STANDIN_NAME}.jsonl"
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(text, encoding="utf-8")
        tokenize_inputs(section, folder / "tokenized", files=[source], run_executor="inline")
    manifest, root = read_manifest(folder / "tokenized")
    (entry,) = manifest["prefixes"]
    return {"datasets": [{"prefix": str((root / entry["path"]).resolve()), "weight": 1.0}]}
