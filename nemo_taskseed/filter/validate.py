"""Schema validation as filter checks: every generated record against taskseed.generated/1
(`schema`), and once more as written, with its verification annotation (`final_schema`)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from nemo_taskseed.filter.checks import CheckContext, FilterStage, register_check
from nemo_taskseed.filter.records import kept_mask, parsed_records, reject


def failing_field(errors: list[str]) -> str:
    """`options.2: ...` -> `options` (the top-level field the report groups by)."""
    first = errors[0] if errors else "<record>: invalid"
    return first.split(":", 1)[0].split(".", 1)[0]


@dataclass
class SchemaValidationStage(FilterStage):
    """Reject records that break taskseed.generated/1, naming the failing field."""

    name: str = "schema"

    def setup(self, worker_metadata=None) -> None:
        from nemo_taskseed.schema.generated import validate_generated

        self._validate = validate_generated

    def filter_frame(self, df: pd.DataFrame) -> None:
        if not hasattr(self, "_validate"):
            self.setup()
        records = parsed_records(df)
        for pos in kept_mask(df).to_numpy().nonzero()[0]:
            record, annotations = records[pos], df["annotations"].iat[pos]
            if annotations and annotations != "{}":
                record = {**record, **json.loads(annotations)}
            idx = df.index[pos]
            errors = self._validate(record)
            if errors:
                reject(df, idx, self.name, f"invalid:{failing_field(errors)}", {"errors": errors[:5]})


@register_check(
    "schema",
    phase="screen",
    order=10,
    section="validate",
    report_column="parsed",
    enabled=lambda s: bool(s.raw["validate"]["enabled"]),
)
def schema_stage(ctx: CheckContext) -> SchemaValidationStage:
    return SchemaValidationStage()


@register_check(
    "final_schema",
    phase="verify",
    order=110,
    section="validate",
    report_column="verified",
    enabled=lambda s: bool(s.verify_on and s.raw["validate"]["enabled"]),
)
def final_schema_stage(ctx: CheckContext) -> SchemaValidationStage:
    # The records as written (with their `verification` annotation) are checked once more.
    return SchemaValidationStage(name="final_schema")
