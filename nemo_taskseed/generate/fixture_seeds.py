"""Seed records built from a mirror of real benchmark rows (Hugging Face folder layout), for tests and benches.

The seeds stage (`nemo_taskseed.seeds`) is the real producer of seeds (it needs the task catalog
and a Ray pipeline); this small reader mirrors its output shape for four tasks and covers
four training splits (arc_easy, commonsense_qa, gsm8k, mbpp) so generation can be exercised on
real rows without it. Rows are read from `<mirror>/<dataset_path>/<config>/<split>.jsonl`; the caller
names the mirror (tests and benches pass the shared fixtures), the package knows no such folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from nemo_taskseed.schema.records import SEED_SCHEMA_VERSION, content_id, validate_seed

# task -> (family, dataset_path, config, split, license, kind)
FIXTURE_TASKS = {
    "arc_easy": ("arc", "allenai/ai2_arc", "ARC-Easy", "train", "cc-by-sa-4.0", "knowledge"),
    "commonsense_qa": ("commonsense_qa", "tau/commonsense_qa", "default", "train", "mit", "knowledge"),
    "gsm8k": ("gsm8k", "openai/gsm8k", "main", "train", "mit", "reasoning"),
    "mbpp": ("mbpp", "google-research-datasets/mbpp", "full", "train", "cc-by-4.0", "reasoning"),
}


def _seed(task: str, row_index: int, row: dict, path: Path) -> dict:
    family, dataset_path, config, split, license_, kind = FIXTURE_TASKS[task]
    context = None
    if task in ("arc_easy", "commonsense_qa"):
        options = list(row["choices"]["text"])
        answer_index = list(row["choices"]["label"]).index(row["answerKey"])
        question, answer_text, fmt, output_type = (
            row["question"],
            options[answer_index],
            "multiple_choice",
            "multiple_choice",
        )
        prompt = f"Question: {question}\nAnswer:"
    elif task == "gsm8k":
        question = row["question"]
        answer_text = row["answer"]  # as lm-eval's doc_to_target gives it: solution + "#### 72"
        options = answer_index = None
        fmt, output_type = "generative", "generate_until"
        prompt = f"Question: {question}\nAnswer:"
    else:  # mbpp
        question = row["text"]
        answer_text = "\n".join(row["test_list"])  # as the seeds stage gives it: the tests
        options = answer_index = None
        fmt, output_type = "generative", "generate_until"
        prompt = f"You are an expert Python programmer, and here is your task: {question}"
    seed = {
        "schema_version": SEED_SCHEMA_VERSION,
        "family": family,
        "task": task,
        "split": split,
        "kind": kind,
        "format": fmt,
        "output_type": output_type,
        "question": question,
        "context": context,
        "options": options,
        "answer_index": answer_index,
        "answer_text": answer_text,
        "references": [answer_text],
        "prompt": prompt,
        "license": license_,
        "source": {
            "dataset_path": dataset_path,
            "dataset_name": config,
            "split": split,
            "row": row_index,
            "file": str(path),
        },
        "raw": row,
    }
    seed["id"] = content_id(task, question, context, options, answer_index, answer_text)
    return seed


def fixture_seeds(per_task: dict[str, int] | None = None, *, offset: int = 0, fixtures_dir: str | Path) -> list[dict]:
    """Valid seed records: `per_task[task]` rows of each task, starting at row `offset`, from the mirror
    `fixtures_dir`."""
    per_task = per_task or {t: 1 for t in FIXTURE_TASKS}
    root = Path(fixtures_dir)
    seeds = []
    for task, count in per_task.items():
        _, dataset_path, config, split, _, _ = FIXTURE_TASKS[task]
        path = root / dataset_path / config / f"{split}.jsonl"
        with open(path, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        for i in range(offset, offset + count):
            seed = _seed(task, i, rows[i], path)
            errors = validate_seed(seed)
            if errors:
                raise ValueError(f"{path}:{i + 1}: {errors}")
            seeds.append(seed)
    return seeds


def write_seeds(path: str | Path, seeds: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for s in seeds:
            fh.write(json.dumps(s, ensure_ascii=False) + "\n")
    return path
