"""The frozen calibration set of the semantic decontamination check (bench/data/decontam_calibration).

Positives: hand-written, meaning-preserving rewrites of real scored benchmark rows (five styles:
synonyms, reorder, voice, summary, wrapped in a new lead-in and closing with new options), one file
per benchmark. Only the rewrites and the coordinates of their source rows live in the project; the
rows themselves are read from the fixture mirror (`../shared/fixtures/hf`). Every rewrite is far
from its source in words (no shared 8-word sequence, word Jaccard < 0.5), checked on load.

Negatives: real training rows of the benchmarks that have them in the mirror (ARC-Easy,
CommonsenseQA, OpenBookQA, GSM8K, MBPP) and the project's own generated records
(`generated_negatives.jsonl`: items the default job's generator wrote from training seeds).

The set is split by a hash of each id into a calibration half (thresholds are chosen on it) and a
report half (figures are reported on it), so the numbers are not graded on what tuned them.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CALIBRATION_DIR = REPO / "bench" / "data" / "decontam_calibration"
GENERATED_NEGATIVES = CALIBRATION_DIR / "generated_negatives.jsonl"
STYLES = ("synonyms", "reorder", "voice", "summary", "wrapped")
# Fields of a source row that a rewrite does not restate (answers, code, ids): excluded from the
# distance check.
NOT_REWRITTEN = {
    "code",
    "test_list",
    "test_setup_code",
    "challenge_test_list",
    "answer",
    "id",
    "task_id",
    "answerKey",
    "label",
    "idx",
    "subject",
    "question_concept",
}
# (dataset, config, split) of the mirror's training rows used as negatives.
TRAINING_NEGATIVES = [
    ("allenai/ai2_arc", "ARC-Easy", "train"),
    ("tau/commonsense_qa", "default", "train"),
    ("allenai/openbookqa", "main", "train"),
    ("openai/gsm8k", "main", "train"),
    ("google-research-datasets/mbpp", "full", "train"),
]


class CalibrationError(ValueError):
    pass


def words(text: str) -> list[str]:
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold())


def distance(row: dict[str, Any], texts: list[str]) -> tuple[bool, float]:
    """(shares an 8-word sequence with the row, word Jaccard with the row)."""
    from nemo_taskseed.filter.text import string_leaves

    src = [words(s) for k, v in row.items() if k not in NOT_REWRITTEN for s in string_leaves(v)]
    new = [words(t) for t in texts]
    grams = {tuple(w[i : i + 8]) for w in src for i in range(len(w) - 7)}
    shared = any(tuple(w[i : i + 8]) in grams for w in new for i in range(len(w) - 7))
    a, b = {x for w in src for x in w}, {x for w in new for x in w}
    return shared, len(a & b) / max(1, len(a | b))


def half_of(item_id: str) -> str:
    """`calibration` or `report`, by a hash of the id (stable across runs and machines)."""
    return "calibration" if hashlib.sha256(item_id.encode()).digest()[0] % 2 == 0 else "report"


def mirror_rows(mirror: Path, dataset: str, config: str | None, split: str) -> list[dict[str, Any]]:
    path = Path(mirror) / dataset / (config or "default") / f"{split}.jsonl"
    if not path.is_file():
        raise CalibrationError(f"{path}: not in the mirror")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class Item:
    """One calibration item as the filter sees a generated record."""

    id: str
    label: str  # positive | negative
    half: str
    group: str  # positives: the benchmark; negatives: training:<dataset> or generated
    style: str
    record: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)  # positives: the source row's coordinates


def load_positives(mirror: Path, folder: Path = CALIBRATION_DIR) -> list[Item]:
    """Every rewrite, checked: a bad line is an error naming the file, the line and the field."""
    items, cache = [], {}
    for path in sorted(folder.glob("*.jsonl")):
        if path == GENERATED_NEGATIVES or path.name == GENERATED_NEGATIVES.name:
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{lineno}"
            try:
                rw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CalibrationError(f"{where}: not JSON ({exc})") from exc
            for key in ("id", "benchmark", "source", "style", "question", "answer_text"):
                if not rw.get(key):
                    raise CalibrationError(f"{where}: field `{key}` is missing or empty")
            if rw["style"] not in STYLES:
                raise CalibrationError(f"{where}: field `style` is {rw['style']!r}; known: {list(STYLES)}")
            src = rw["source"]
            key = (src["dataset_path"], src.get("config"), src["split"])
            if key not in cache:
                cache[key] = mirror_rows(mirror, *key)
            if not 0 <= int(src["row"]) < len(cache[key]):
                raise CalibrationError(f"{where}: field `source.row` {src['row']} is not a row of {key}")
            row = cache[key][int(src["row"])]
            texts = [rw["question"], *([rw["context"]] if rw.get("context") else []), *(rw.get("options") or [])]
            shared, jaccard = distance(row, texts)
            if shared or jaccard >= 0.5:
                raise CalibrationError(
                    f"{where}: rewrite too close to its source row (shared 8-gram: {shared}, word Jaccard {jaccard:.2f})"
                )
            record = {
                "question": rw["question"],
                "context": rw.get("context"),
                "options": rw.get("options"),
                "answer_text": rw["answer_text"],
                "family": rw["benchmark"],
            }
            items.append(Item(rw["id"], "positive", half_of(rw["id"]), rw["benchmark"], rw["style"], record, src))
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise CalibrationError(f"duplicate rewrite ids: {sorted({i for i in ids if ids.count(i) > 1})[:5]}")
    return items


def load_negatives(mirror: Path) -> list[Item]:
    from nemo_taskseed.filter.semantic.views import raw_row_text

    items = []
    for dataset, config, split in TRAINING_NEGATIVES:
        for i, row in enumerate(mirror_rows(mirror, dataset, config, split)):
            text, options = raw_row_text(row) or ("", [])
            item_id = f"train:{dataset}/{config}:{i}"
            record = {"question": text, "options": options or None, "family": dataset}
            items.append(Item(item_id, "negative", half_of(item_id), f"training:{dataset}", "real", record))
    if GENERATED_NEGATIVES.is_file():
        for lineno, line in enumerate(GENERATED_NEGATIVES.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                rec = json.loads(line)
                item_id = f"generated:{rec.get('item_id') or lineno}"
                items.append(Item(item_id, "negative", half_of(item_id), "generated", "generated", rec))
    return items
