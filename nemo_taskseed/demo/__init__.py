"""A tiny demo seed mirror the project writes itself, so the default job runs with no hub and no GPU.

The rows are original (written for this project, not copied from any benchmark) and use the field
layout of the public datasets lm-eval reads, so lm-eval's own templates normalize them.
"""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

# packaged file -> mirror path <dataset_path>/<dataset_name or default>/<split>.jsonl
DEMO_FILES = {
    # Training splits: the demo's seeds.
    "arc_easy_train.jsonl": "allenai/ai2_arc/ARC-Easy/train.jsonl",
    "commonsense_qa_train.jsonl": "tau/commonsense_qa/default/train.jsonl",
    "openbookqa_train.jsonl": "allenai/openbookqa/main/train.jsonl",
    "gsm8k_train.jsonl": "openai/gsm8k/main/train.jsonl",
    "mbpp_train.jsonl": "google-research-datasets/mbpp/full/train.jsonl",
    # Every split lm-eval scores for the demo's benchmarks (DEMO_BENCHMARKS), so decontamination
    # has an index to check against. One leak is planted on purpose: the ARC-Easy test row
    # Demo_ARC_test_0 is the training row Demo_ARC_0, so the default job's contamination report
    # shows a contaminated seed and the generated items it led to being dropped.
    "arc_easy_test.jsonl": "allenai/ai2_arc/ARC-Easy/test.jsonl",
    "arc_easy_validation.jsonl": "allenai/ai2_arc/ARC-Easy/validation.jsonl",
    "arc_challenge_test.jsonl": "allenai/ai2_arc/ARC-Challenge/test.jsonl",
    "arc_challenge_validation.jsonl": "allenai/ai2_arc/ARC-Challenge/validation.jsonl",
    "commonsense_qa_validation.jsonl": "tau/commonsense_qa/default/validation.jsonl",
    "openbookqa_test.jsonl": "allenai/openbookqa/main/test.jsonl",
    "openbookqa_validation.jsonl": "allenai/openbookqa/main/validation.jsonl",
    "gsm8k_test.jsonl": "openai/gsm8k/main/test.jsonl",
    "mbpp_test.jsonl": "google-research-datasets/mbpp/full/test.jsonl",
    "mbppplus_test.jsonl": "evalplus/mbppplus/default/test.jsonl",
}
DEMO_TASKS = ["arc_easy", "commonsense_qa", "openbookqa", "gsm8k", "mbpp"]
# The decontamination benchmarks whose scored splits the mirror holds (names as in filter.decontam.benchmarks).
DEMO_BENCHMARKS = ["arc", "commonsense_qa", "openbookqa", "gsm8k", "mbpp"]


def write_demo_mirror(root: str | Path) -> Path:
    root = Path(root)
    data = files("nemo_taskseed.demo") / "data"
    for packaged, target in DEMO_FILES.items():
        dest = root / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        with (data / packaged).open("rb") as src, dest.open("wb") as out:
            shutil.copyfileobj(src, out)
    return root
