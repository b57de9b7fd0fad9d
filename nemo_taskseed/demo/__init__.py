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
    "arc_easy_train.jsonl": "allenai/ai2_arc/ARC-Easy/train.jsonl",
    "commonsense_qa_train.jsonl": "tau/commonsense_qa/default/train.jsonl",
    "openbookqa_train.jsonl": "allenai/openbookqa/main/train.jsonl",
    "gsm8k_train.jsonl": "openai/gsm8k/main/train.jsonl",
    "mbpp_train.jsonl": "google-research-datasets/mbpp/full/train.jsonl",
}
DEMO_TASKS = ["arc_easy", "commonsense_qa", "openbookqa", "gsm8k", "mbpp"]


def write_demo_mirror(root: str | Path) -> Path:
    root = Path(root)
    data = files("nemo_taskseed.demo") / "data"
    for packaged, target in DEMO_FILES.items():
        dest = root / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        with (data / packaged).open("rb") as src, dest.open("wb") as out:
            shutil.copyfileobj(src, out)
    return root
