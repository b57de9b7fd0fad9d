"""The one shape of a rejected line, in every step's `rejected*.jsonl`.

    {"stage": <the check that dropped it>, "reason": <a code, summed in the step summary>,
     "detail": <what exactly failed: text or an object>, ...where it came from}

Where it came from depends on the step: a seeds file and line (`file`, `line`, `row`, `task`,
`field`), or a seed and record (`seed_id`, `id`, `family`, the record or the raw model output).
The step summaries count `reason`; `taskseed` readers and the quality reports rely on the three
keys and nothing else.
"""

from __future__ import annotations

from typing import Any

CORE_KEYS = ("stage", "reason", "detail")


def rejected(stage: str, reason: str, detail: Any = "", **where: Any) -> dict[str, Any]:
    """One rejected line: the three keys every step writes, then where the input came from."""
    return {"stage": stage, "reason": reason, "detail": detail, **where}


def missing_core_keys(line: dict[str, Any]) -> list[str]:
    return [k for k in CORE_KEYS if k not in line]
