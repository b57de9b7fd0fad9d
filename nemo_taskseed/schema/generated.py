"""Generated record schema (version 1): one pretraining document per generated item and variant.

A generated record is a new item that exercises its seed's capability on different content, plus
its enrichment and the final text for one ablation variant. Verification, dedup and
decontamination read these keys; the `text` formats are documented in README (Generation) and
produced by `nemo_taskseed.generate.render`.

`id` is `content_id(item_id, variant)` where `item_id = content_id(family, task, question, context,
options, answer_index, answer_text, reference, tests)`: the same item rendered as two variants gets
two ids, and `lineage.item_id` groups them.
"""

from __future__ import annotations

from typing import Any

from nemo_taskseed.schema.records import FORMATS, KINDS, MULTIPLE_CHOICE_RULE, validate_record

GENERATED_SCHEMA_VERSION = "taskseed.generated/1"
VARIANTS = ("label", "answer", "reasoning", "context")
# Variants whose text needs the enrichment pass (stage 4).
ENRICHED_VARIANTS = ("reasoning", "context")

_NONEMPTY = {"type": "string", "minLength": 1, "pattern": r"\S"}
_HEX16 = {"type": "string", "pattern": "^[0-9a-f]{16}$"}

ENRICHMENT_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "required": ["reasoning", "alternatives", "knowledge"],
    "properties": {
        "reasoning": _NONEMPTY,
        # Multiple choice: one entry per wrong option; generative: common mistakes (option null).
        "alternatives": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["option", "why_wrong"],
                "properties": {
                    "option": {"type": ["string", "null"]},
                    "why_wrong": {"type": "string"},
                },
            },
        },
        "knowledge": {"type": "string"},
        "lineage": {"type": "object"},
    },
}

GENERATED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": GENERATED_SCHEMA_VERSION,
    "type": "object",
    "required": [
        "schema_version",
        "id",
        "seed_id",
        "family",
        "task",
        "kind",
        "format",
        "question",
        "context",
        "options",
        "answer_index",
        "answer_text",
        "reference",
        "tests",
        "license",
        "lineage",
        "enrichment",
        "variant",
        "text",
    ],
    "properties": {
        "schema_version": {"const": GENERATED_SCHEMA_VERSION},
        "id": _HEX16,
        "seed_id": _HEX16,
        "family": _NONEMPTY,
        "task": _NONEMPTY,
        "kind": {"enum": list(KINDS)},
        "format": {"enum": list(FORMATS)},
        "question": _NONEMPTY,
        "context": {"type": ["string", "null"]},
        "options": {"type": ["array", "null"], "items": _NONEMPTY},
        "answer_index": {"type": ["integer", "null"], "minimum": 0},
        "answer_text": _NONEMPTY,
        # Worked solution (math) or reference program (code); null when the item has none.
        "reference": {"type": ["string", "null"]},
        # Code items: assert statements the reference must pass; null otherwise.
        "tests": {"type": ["array", "null"], "items": _NONEMPTY},
        "license": _NONEMPTY,
        "lineage": {
            "type": "object",
            "required": [
                "seed_id",
                "item_id",
                "template_id",
                "template_version",
                "model",
                "backend",
                "sampling",
                "request_key",
                "sample_index",
                "raw_output",
            ],
            "properties": {
                "seed_id": _HEX16,
                "item_id": _HEX16,
                "template_id": _NONEMPTY,
                "template_version": {"type": ["string", "integer"]},
                "model": _NONEMPTY,
                "backend": {"enum": ["vllm", "openai"]},
                "sampling": {
                    "type": "object",
                    "required": ["n", "temperature", "top_p", "max_tokens", "seed"],
                },
                "request_key": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "sample_index": {"type": "integer", "minimum": 0},
                "raw_output": {"type": "string"},
                "structured_outputs": {"type": "boolean"},
                "seed_task": {"type": "string"},
            },
        },
        "enrichment": ENRICHMENT_SCHEMA,
        "variant": {"enum": list(VARIANTS)},
        "text": _NONEMPTY,
    },
    "allOf": [
        MULTIPLE_CHOICE_RULE,
        # Enriched variants cannot exist without their enrichment.
        {
            "if": {"properties": {"variant": {"enum": list(ENRICHED_VARIANTS)}}},
            "then": {"properties": {"enrichment": {"type": "object"}}},
        },
    ],
}


def validate_generated(record: dict[str, Any]) -> list[str]:
    """All schema violations of a generated record (empty list: valid)."""
    errors = validate_record(record, GENERATED_SCHEMA)
    options = record.get("options")
    if isinstance(options, list) and len({o.strip().casefold() for o in options if isinstance(o, str)}) != len(options):
        errors.append("options: not distinct")
    return errors
