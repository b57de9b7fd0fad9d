"""Seed record schema (version 1), as JSON Schema, validated with `jsonschema`."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

import fastjsonschema
import jsonschema

SEED_SCHEMA_VERSION = "taskseed.seed/1"
FORMATS = ("multiple_choice", "generative")
KINDS = ("knowledge", "reasoning")

_NONEMPTY = {"type": "string", "minLength": 1, "pattern": r"\S"}

# Multiple choice must carry >= 2 options and an answer index; generative records carry neither.
# Shared by every record schema (seeds, generated).
MULTIPLE_CHOICE_RULE: dict[str, Any] = {
    "if": {"properties": {"format": {"const": "multiple_choice"}}},
    "then": {
        "properties": {
            "options": {"type": "array", "minItems": 2},
            "answer_index": {"type": "integer"},
        }
    },
    "else": {"properties": {"options": {"type": "null"}, "answer_index": {"type": "null"}}},
}

SEED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SEED_SCHEMA_VERSION,
    "type": "object",
    "required": [
        "schema_version",
        "id",
        "family",
        "task",
        "split",
        "kind",
        "format",
        "output_type",
        "question",
        "context",
        "options",
        "answer_index",
        "answer_text",
        "references",
        "prompt",
        "license",
        "source",
    ],
    "properties": {
        "schema_version": {"const": SEED_SCHEMA_VERSION},
        "id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
        "family": _NONEMPTY,
        "task": _NONEMPTY,
        "split": _NONEMPTY,
        "kind": {"enum": list(KINDS)},
        "format": {"enum": list(FORMATS)},
        "output_type": {"enum": ["multiple_choice", "generate_until", "loglikelihood"]},
        # Optional (seeds written before the catalog derived it have none).
        "verifier": {"enum": ["multiple_choice", "math", "code", "short_answer", None]},
        "question": _NONEMPTY,
        "context": {"type": ["string", "null"]},
        "options": {"type": ["array", "null"], "items": {"type": "string"}},
        "answer_index": {"type": ["integer", "null"], "minimum": 0},
        "answer_text": _NONEMPTY,
        "references": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "prompt": {"type": "string"},
        "license": _NONEMPTY,
        "source": {
            "type": "object",
            "required": ["dataset_path", "dataset_name", "split", "row"],
            "properties": {
                "dataset_path": _NONEMPTY,
                "dataset_name": {"type": ["string", "null"]},
                "split": _NONEMPTY,
                "row": {"type": ["integer", "null"], "minimum": 0},
                "file": {"type": ["string", "null"]},
            },
        },
        "raw": {"type": "object"},
    },
    "allOf": [MULTIPLE_CHOICE_RULE],
}


class SchemaError(ValueError):
    """A record that fails its schema; `errors` are `field: message` strings."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


@lru_cache(maxsize=8)
def _validators(schema_json: str) -> tuple[Any, jsonschema.protocols.Validator]:
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return fastjsonschema.compile(schema), cls(schema)


_BY_SCHEMA: dict[int, tuple[Any, Any]] = {}


def _validators_of(schema: dict[str, Any]) -> tuple[Any, Any]:
    """Compiled validators per schema object (the schemas are module constants): serialising the
    schema on every call to key a cache cost more than validating (~1 ms per record)."""
    found = _BY_SCHEMA.get(id(schema))
    if found is None or found[0] is not schema:
        found = _BY_SCHEMA[id(schema)] = (schema, _validators(json.dumps(schema, sort_keys=True)))
    return found[1]


def validate_record(record: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """All schema violations of `record`, each as `field.path: message` (empty list: valid).

    fastjsonschema (compiled, ~50x faster) decides validity; jsonschema then lists every error of
    the rare invalid record, which fastjsonschema would stop at the first of.
    """
    is_valid, explain = _validators_of(schema)
    errors = []
    try:
        is_valid(record)
    except fastjsonschema.JsonSchemaException:
        for err in sorted(explain.iter_errors(record), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(p) for p in err.absolute_path) or "<record>"
            errors.append(f"{where}: {err.message}")
    if record.get("format") == "multiple_choice":
        options, idx = record.get("options"), record.get("answer_index")
        if isinstance(options, list) and isinstance(idx, int) and not 0 <= idx < len(options):
            errors.append(f"answer_index: {idx} out of range for {len(options)} options")
        elif isinstance(options, list) and isinstance(idx, int) and options[idx] != record.get("answer_text"):
            errors.append("answer_text: does not equal options[answer_index]")
    return errors


def validate_seed(record: dict[str, Any]) -> list[str]:
    return validate_record(record, SEED_SCHEMA)


def content_id(*parts: Any) -> str:
    """Stable 16-hex id from the canonical JSON of the content that makes a record what it is."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
