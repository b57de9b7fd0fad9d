"""Schema validation of generated records against `nemo_taskseed.schema.generated` (imported lazily)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nemo_taskseed.errors import UserError


def generated_validator() -> Callable[[dict[str, Any]], list[str]]:
    """`validate_generated` from the generation stage's schema module; a clear error if absent."""
    try:
        from nemo_taskseed.schema.generated import validate_generated
    except ImportError as exc:
        raise UserError(
            "cannot validate generated records: nemo_taskseed.schema.generated (taskseed.generated/1) "
            f"is not importable ({exc}); install the generation stage or set filter.validate.enabled=false"
        ) from exc
    return validate_generated


def failing_field(errors: list[str]) -> str:
    """`options.2: ...` -> `options` (the top-level field the report groups by)."""
    first = errors[0] if errors else "<record>: invalid"
    return first.split(":", 1)[0].split(".", 1)[0]
