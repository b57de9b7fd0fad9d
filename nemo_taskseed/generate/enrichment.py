"""Stage 4, answer enrichment, as plain logic (no engine): each item's enrichment request, and
the generated records, one per configured variant, from the items and their enrichment replies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nemo_taskseed.generate.parsers import Rejected, parse_enrichment, reply_schema
from nemo_taskseed.generate.prompts import enrich_fields
from nemo_taskseed.generate.render import render_text
from nemo_taskseed.generate.settings import EnrichmentSettings
from nemo_taskseed.llm.requests import Request, make_request
from nemo_taskseed.schema.generated import ENRICHED_VARIANTS, GENERATED_SCHEMA_VERSION
from nemo_taskseed.schema.records import content_id
from nemo_taskseed.schema.rejected import rejected as _reject  # the one rejected-line shape


@dataclass
class AnswerEnrichment:
    """Stage 4: one generated record per configured variant for each item.

    Variants `reasoning` and `context` need an explanation (reasoning, why each alternative fails,
    connecting knowledge) from a second request per item; `label` and `answer` do not.
    """

    settings: EnrichmentSettings
    structured_outputs: bool
    templates: dict[str, Any]
    model: str

    def request(self, item: dict) -> Request | None:
        """The item's enrichment request (its content only: equal items ask the same), or None."""
        if not self.settings.needs_pass:
            return None
        template = self.templates[self.settings.template]
        schema = reply_schema("enrichment", len(item.get("options") or [])) if self.structured_outputs else None
        return make_request(template.render(**enrich_fields(item)), self.model, self.settings.sampling, schema)

    def finish(self, rows_in: list[tuple[str, str, dict]], results: dict[str, dict]) -> list[tuple[str, str, dict]]:
        """Generation's rows (items and rejections) in; records (kind=generated) and rejections out."""
        enrich = self.settings
        variants = enrich.variants
        items = [rec for _, kind, rec in rows_in if kind == "item"]
        rows: list[tuple[str, str, dict]] = [
            (r.get("seed_id", ""), "rejected", r) for _, k, r in rows_in if k == "rejected"
        ]

        enrichments: dict[str, dict | Rejected] = {}
        if enrich.needs_pass:
            template = self.templates[enrich.template]
            for item in items:
                item_id = item["lineage"]["item_id"]
                req = self.request(item)
                result = results[req.key]
                raw = result["outputs"][0] if result["outputs"] else ""
                if result.get("error"):
                    parsed = Rejected("request_refused", result["error"])
                else:
                    parsed = parse_enrichment(raw, item)
                if not isinstance(parsed, Rejected):
                    parsed["lineage"] = {
                        "template_id": template.id,
                        "template_version": template.version,
                        "model": self.model,
                        "backend": result["backend"],
                        "sampling": enrich.sampling,
                        "request_key": req.key,
                        "raw_output": raw,
                    }
                else:
                    parsed.detail = parsed.detail or raw[:80]
                    parsed.raw = raw  # type: ignore[attr-defined]
                    parsed.key = req.key  # type: ignore[attr-defined]
                enrichments[item_id] = parsed

        for item in items:
            item_id = item["lineage"]["item_id"]
            enrichment = enrichments.get(item_id)
            if isinstance(enrichment, Rejected):
                rows.append(
                    (
                        item["lineage"]["seed_id"],
                        "rejected",
                        _reject(
                            "enrich",
                            enrichment.reason,
                            enrichment.detail,
                            seed_id=item["lineage"]["seed_id"],
                            item_id=item_id,
                            variants=[v for v in variants if v in ENRICHED_VARIANTS],
                            request_key=enrichment.key,  # type: ignore[attr-defined]
                            raw_output=enrichment.raw,  # type: ignore[attr-defined]
                        ),
                    )
                )
                enrichment = None
            for variant in variants:
                if variant == "label" and item["format"] != "multiple_choice":
                    # A generative item's label IS its answer: the document would repeat `answer` byte for byte.
                    continue
                if variant in ENRICHED_VARIANTS:
                    if enrichment is None:
                        continue  # counted once above, per item
                    if variant == "context" and not enrichment.get("knowledge"):
                        rows.append(
                            (
                                item["lineage"]["seed_id"],
                                "rejected",
                                _reject(
                                    "enrich",
                                    "enrichment_no_knowledge",
                                    "",
                                    seed_id=item["lineage"]["seed_id"],
                                    item_id=item_id,
                                    variants=["context"],
                                ),
                            )
                        )
                        continue
                record = {
                    "schema_version": GENERATED_SCHEMA_VERSION,
                    "id": content_id(item_id, variant),
                    "seed_id": item["lineage"]["seed_id"],
                    "family": item["family"],
                    "task": item["task"],
                    "kind": item["kind"],
                    "format": item["format"],
                    "question": item["question"],
                    "context": item["context"],
                    "options": item["options"],
                    "answer_index": item["answer_index"],
                    "answer_text": item["answer_text"],
                    "reference": item["reference"],
                    "tests": item["tests"],
                    "license": item["license"],
                    "lineage": item["lineage"],
                    "enrichment": enrichment if enrich.needs_pass else None,
                    "variant": variant,
                    "text": render_text(item, variant, enrichment),
                }
                rows.append((record["id"], "generated", record))
        return rows
