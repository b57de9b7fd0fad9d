"""How a schema failure of a generated record is named in the filter summary."""

from __future__ import annotations


def failing_field(errors: list[str]) -> str:
    """`options.2: ...` -> `options` (the top-level field the report groups by)."""
    first = errors[0] if errors else "<record>: invalid"
    return first.split(":", 1)[0].split(".", 1)[0]
