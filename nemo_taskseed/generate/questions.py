"""Stage 3, similar-question generation, as plain logic (no engine): each seed's request, its
replies parsed and judged (language, copies of the seed or its examples), and the shard's items
deduplicated across seeds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.generate.language import language_mismatch
from nemo_taskseed.generate.parsers import Rejected, is_copy, normalize, parse_item, reply_schema
from nemo_taskseed.generate.prompts import seed_fields, select_template_id
from nemo_taskseed.generate.settings import GenerationSettings
from nemo_taskseed.llm.requests import Request, make_request
from nemo_taskseed.schema.records import content_id
from nemo_taskseed.schema.rejected import rejected as _reject  # the one rejected-line shape


@dataclass(frozen=True)
class SeedPlan:
    """One seed's generation request and what its replies are judged against."""

    seed: dict
    template: Any
    examples: list[dict]
    request: Request


@dataclass(frozen=True)
class Candidate:
    """A parsed item of one seed, not yet checked against the shard's other items."""

    item: dict
    item_id: str
    question_key: str
    lineage: dict


@dataclass
class SimilarQuestions:
    """Stage 3 for one shard: for each seed, pick its prompt template and ask for `n` new items
    exercising the same capability on different content; parse every reply strictly and drop
    garbage with a reason.

    Replies are parsed per seed (`parse`) as each arrives, so its items can go to enrichment at
    once; duplicates across seeds are decided at the end (`finish`), in seed order, so what is
    kept does not depend on which reply came first.
    """

    settings: GenerationSettings
    templates: dict[str, Any]
    model: str

    def _template_for(self, seed: dict):
        tid = select_template_id(seed, self.settings.templates)
        if tid not in self.templates:
            raise UserError(f"prompt template {tid!r} (for task {seed['task']}) not found in configs/prompts")
        return self.templates[tid]

    def _examples(self, seed: dict, by_task: dict[str, list[dict]]) -> list[dict]:
        k = self.settings.examples_per_prompt
        if k <= 0:
            return []
        # Deterministic few-shot: the other seeds of the task in this shard, ranked by a hash of the pair.
        others = [s for s in by_task.get(seed["task"], []) if s["id"] != seed["id"]]
        others.sort(key=lambda s: content_id(seed["id"], s["id"]))
        return others[:k]

    def plan(self, seeds: list[dict]) -> list[SeedPlan]:
        gen = self.settings
        by_task: dict[str, list[dict]] = {}
        for s in seeds:
            by_task.setdefault(s["task"], []).append(s)
        plans = []
        for seed in seeds:
            template = self._template_for(seed)
            examples = self._examples(seed, by_task)
            messages = template.render(**seed_fields(seed, template, examples))
            schema = (
                reply_schema(template.output, len(seed.get("options") or []), bool(seed.get("context")))
                if gen.structured_outputs
                else None
            )
            plans.append(SeedPlan(seed, template, examples, make_request(messages, self.model, gen.sampling, schema)))
        return plans

    def parse(self, plan: SeedPlan, result: dict) -> list[Candidate | tuple[str, str, dict]]:
        """One seed's reply: its candidates and its rejected rows, in sample order."""
        gen, seed, template, request = self.settings, plan.seed, plan.template, plan.request
        if result.get("error"):
            row = _reject(
                "generate",
                "request_refused",
                result["error"],
                seed_id=seed["id"],
                template_id=template.id,
                request_key=request.key,
            )
            return [(seed["id"], "rejected", row)]
        entries: list[Candidate | tuple[str, str, dict]] = []
        for index, raw in enumerate(result["outputs"]):
            lineage = {
                "seed_id": seed["id"],
                "seed_task": seed["task"],
                "template_id": template.id,
                "template_version": template.version,
                "model": self.model,
                "backend": result["backend"],
                "sampling": gen.sampling,
                "request_key": request.key,
                "sample_index": index,
                "raw_output": raw,
                "structured_outputs": gen.structured_outputs,
                "example_seed_ids": [e["id"] for e in plan.examples],
            }
            parsed = parse_item(template.output, raw, seed, index, min_question_words=gen.min_question_words)
            if isinstance(parsed, Rejected):
                entries.append((seed["id"], "rejected", _reject("generate", parsed.reason, parsed.detail, **lineage)))
                continue
            mismatch = language_mismatch(seed, parsed) if gen.check_language else None
            if mismatch:
                entries.append((seed["id"], "rejected", _reject("generate", "wrong_language", mismatch, **lineage)))
                continue
            if is_copy(parsed, seed, gen.copy_similarity) or any(
                is_copy(parsed, e, gen.copy_similarity) for e in plan.examples
            ):
                entries.append((seed["id"], "rejected", _reject("generate", "copy_of_seed", "", **lineage)))
                continue
            item = {"family": seed["family"], "task": seed["task"], "kind": seed["kind"], "license": seed["license"]}
            item.update(parsed)
            item_id = content_id(
                item["family"],
                item["task"],
                item["question"],
                item["context"],
                item["options"],
                item["answer_index"],
                item["answer_text"],
                item["reference"],
                item["tests"],
            )
            entries.append(Candidate(item, item_id, normalize(item["question"]), lineage))
        return entries

    def finish(self, parsed: list[list[Candidate | tuple[str, str, dict]]]) -> list[tuple[str, str, dict]]:
        """The shard's rows (kind=item or rejected) from every seed's `parse`, in seed order."""
        rows: list[tuple[str, str, dict]] = []
        seen_items: set[str] = set()
        for entries in parsed:
            seen_questions: set[str] = set()
            for entry in entries:
                if not isinstance(entry, Candidate):
                    rows.append(entry)
                    continue
                if entry.item_id in seen_items or entry.question_key in seen_questions:
                    rows.append(
                        (entry.lineage["seed_id"], "rejected", _reject("generate", "duplicate", "", **entry.lineage))
                    )
                    continue
                seen_items.add(entry.item_id)
                seen_questions.add(entry.question_key)
                item = dict(entry.item, lineage={**entry.lineage, "item_id": entry.item_id})
                rows.append((entry.item_id, "item", item))
        return rows
