"""The unified record schemas and their validation.

Every stage reads and writes JSONL whose rows validate against one of these schemas; a row that
does not is rejected with the failing field, never silently passed on.
"""

from nemo_taskseed.schema.records import (
    FORMATS,
    KINDS,
    SEED_SCHEMA,
    SEED_SCHEMA_VERSION,
    SchemaError,
    content_id,
    validate_record,
    validate_seed,
)

__all__ = [
    "FORMATS",
    "KINDS",
    "SEED_SCHEMA",
    "SEED_SCHEMA_VERSION",
    "SchemaError",
    "content_id",
    "validate_record",
    "validate_seed",
]
