"""Builders for the filter tests: seed and generated records made from real fixture rows.

Rows are read from ../shared/fixtures/hf at test time (never copied into the repo). Generated
records follow taskseed.generated/1 with the lineage the generation stage writes; only the
content comes from real benchmark rows. No tests here.
"""

from __future__ import annotations

import json
import string
import sys
from pathlib import Path
from typing import Any

from nemo_taskseed.schema.records import content_id

LETTERS = string.ascii_uppercase


def fixture_rows(fixtures_hf: Path, dataset: str, config: str, split: str) -> list[dict[str, Any]]:
    path = fixtures_hf / dataset / config / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def mc_fields(row: dict[str, Any]) -> dict[str, Any]:
    """question/options/answer_index from arc, openbookqa, commonsense_qa or mmlu rows."""
    question = row.get("question") or row.get("question_stem")
    if isinstance(row.get("choices"), dict):
        options = list(row["choices"]["text"])
        answer_index = list(row["choices"]["label"]).index(row["answerKey"])
    else:
        options, answer_index = list(row["choices"]), int(row["answer"])
    return {
        "question": question,
        "options": options,
        "answer_index": answer_index,
        "answer_text": options[answer_index],
    }


def gsm8k_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "question": row["question"],
        "options": None,
        "answer_index": None,
        "answer_text": row["answer"].split("####")[-1].strip(),
        "reference": row["answer"],
    }


def mbpp_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "question": row["text"],
        "options": None,
        "answer_index": None,
        "answer_text": row["code"],
        "reference": row["code"],
        "tests": list(row["test_list"]),
    }


def make_seed(family: str, task: str, fields: dict[str, Any], row: int) -> dict[str, Any]:
    seed = {
        "schema_version": "taskseed.seed/1",
        "family": family,
        "task": task,
        "split": "train",
        "kind": "reasoning",
        "format": "multiple_choice" if fields.get("options") else "generative",
        "output_type": "multiple_choice" if fields.get("options") else "generate_until",
        "question": fields["question"],
        "context": None,
        "options": fields.get("options"),
        "answer_index": fields.get("answer_index"),
        "answer_text": fields["answer_text"],
        "references": [fields.get("reference") or fields["answer_text"]],
        "prompt": fields["question"],
        "license": "mit",
        "source": {"dataset_path": family, "dataset_name": None, "split": "train", "row": row},
    }
    seed["id"] = content_id(family, task, "train", row)
    return seed


def make_generated(
    seed: dict[str, Any], fields: dict[str, Any], sample_index: int = 0, variant: str = "answer"
) -> dict[str, Any]:
    options = fields.get("options")
    body = [fields["question"]]
    if options:
        body += [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]
    body.append(f"Answer: {fields['answer_text']}")
    item = {
        "family": seed["family"],
        "task": seed["task"],
        "question": fields["question"],
        "context": fields.get("context"),
        "options": options,
        "answer_index": fields.get("answer_index"),
        "answer_text": fields["answer_text"],
        "reference": fields.get("reference"),
        "tests": fields.get("tests"),
    }
    item_id = content_id(*item.values())
    return {
        "schema_version": "taskseed.generated/1",
        "id": content_id(item_id, variant, sample_index),
        "seed_id": seed["id"],
        "kind": seed["kind"],
        "format": "multiple_choice" if options else "generative",
        **item,
        "license": seed["license"],
        "lineage": {
            "seed_id": seed["id"],
            "item_id": item_id,
            "template_id": "similar_question",
            "template_version": 1,
            "model": "SmolLM2-135M-Instruct",
            "backend": "vllm",
            "sampling": {"n": 1, "temperature": 0.8, "top_p": 0.95, "max_tokens": 512, "seed": 0},
            "request_key": "0" * 64,
            "sample_index": sample_index,
            "raw_output": "{}",
        },
        "enrichment": None,
        "variant": variant,
        "text": "\n".join(body),
    }


def write_jsonl(path: Path, records: list[dict[str, Any]], extra_lines: list[str] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        for line in extra_lines:
            fh.write(line + "\n")
    return path


# The embedding-model stages (semantic decontamination and dedup, diversity) add ~5 s a run; tests
# of resume and publication pass these to leave them out.
NO_EMBEDDING_STAGES = (
    "filter.decontam.semantic.enabled=false",
    "filter.dedup.semantic.enabled=false",
    "filter.diversity.enabled=false",
)


def filter_command(gen: Path, out: Path, fixtures_hf: Path, *overrides: str) -> list[str]:
    """`taskseed filter` over `gen`, in-process, decontaminated against the fixture mirror's
    benchmarks (configs/benchmarks/smoke.yaml)."""
    return [
        sys.executable,
        "-m",
        "nemo_taskseed",
        "filter",
        "--in",
        str(gen),
        "--out",
        str(out),
        "--executor",
        "inline",
        "--mirror",
        str(fixtures_hf),
        "--config",
        "benchmarks/smoke",
        *overrides,
    ]
