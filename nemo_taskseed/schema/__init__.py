"""The record shapes that flow between steps, and their validation.

Every stage reads and writes JSONL whose rows validate against one of these schemas; a row that
does not is rejected with the failing field, never silently passed on.

    records.py    taskseed.seed/1 (seeds) and the shared field rules
    generated.py  taskseed.generated/1 (generate, filter)
    rejected.py   the one rejected-line shape of every step
    plan.py       plan.json (taskseed.blend-plan/1): the contract between data and training

Names are imported on first use: training environments read plan.json without the JSON-schema
libraries the record validators need.
"""

from __future__ import annotations

import importlib

_RECORDS = (
    "FORMATS",
    "KINDS",
    "SEED_SCHEMA",
    "SEED_SCHEMA_VERSION",
    "SchemaError",
    "content_id",
    "validate_record",
    "validate_seed",
)
__all__ = list(_RECORDS)


def __getattr__(name: str):
    if name in _RECORDS:
        return getattr(importlib.import_module("nemo_taskseed.schema.records"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
