"""The preview view twice: short on the terminal (texts cut to preview.max_chars, one line per
distinct verdict of an item's documents), in full in `preview.md` (every text, a check-by-check
table per item, every drop's detail, the raw model output of what could not be parsed)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.text import Text

from nemo_taskseed.generate.prompts import LETTERS
from nemo_taskseed.preview.view import DROP, NOT_RECORDED, OFF, PASS, Candidate, PreviewView, SeedView, Verdict

# The filter's stage names as the terminal lists the checks a document passed (80 columns).
SHORT = {
    "schema": "schema",
    "text_quality": "text",
    "item_rules": "item",
    "explanation": "expl",
    "decontam": "decon",
    "semantic_decontam": "sem-dc",
    "exact_dedup": "exact",
    "fuzzy_dedup": "fuzzy",
    "semantic_dedup": "sem-dd",
    "verify": "verify",
    "final_schema": "final",
}


@dataclass
class Header:
    """What the preview ran, for both renderings."""

    config: str
    out: str
    prompts_dir: str
    templates: list[dict[str, Any]]  # {id, version, file, state}
    other_edits: list[str]  # prompt files edited since the last preview that these seeds do not use
    steps: dict[str, float]
    generation: dict[str, Any]  # generate summary: requests, shards
    filter: dict[str, Any]  # filter summary: warnings, shards
    engine: str
    notes: list[str] = field(default_factory=list)


def cut(text: Any, limit: int) -> str:
    """One line of at most `limit` characters (whitespace runs folded)."""
    flat = re.sub(r"\s+", " ", str(text or "")).strip()
    return flat if len(flat) <= limit else flat[: max(limit - 1, 1)].rstrip() + "…"


def options_line(item: dict[str, Any]) -> str:
    options = item.get("options") or []
    return " | ".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))


def answer_of(item: dict[str, Any]) -> str:
    if item.get("options") and item.get("answer_index") is not None:
        return f"{LETTERS[int(item['answer_index'])]}. {item.get('answer_text')}"
    return str(item.get("answer_text") or "")


def _requests_line(gen: dict[str, Any]) -> str:
    shards = gen.get("shards") or {}
    if not shards.get("run_now"):
        return "every shard unchanged since the last preview: nothing generated"
    parts = []
    for stage in ("generate", "enrich"):
        r = (gen.get("requests") or {}).get(stage) or {}
        if r.get("total"):
            refused = f", {r['refused']} refused" if r.get("refused") else ""
            parts.append(f"{stage} {r.get('sent', 0)} sent, {r.get('cached', 0)} from cache{refused}")
    return "; ".join(parts) or "no requests"


# ---------------------------------------------------------------------------------------------
# Terminal
# ---------------------------------------------------------------------------------------------


def print_view(console: Console, header: Header, view: PreviewView, max_chars: int) -> None:
    symbols = (console.encoding or "").lower().startswith("utf")
    # A terminal that cannot show them (an ASCII locale) gets ASCII marks instead of replacement characters.
    mark = (
        {PASS: "✓", DROP: "✗", NOT_RECORDED: "·", "sep": "·"}
        if symbols
        else {PASS: "+", DROP: "x", NOT_RECORDED: "-", "sep": "-"}
    )
    steps = f" {mark['sep']} ".join(f"{step} {seconds:.0f} s" for step, seconds in header.steps.items())
    console.print(Text.assemble(("taskseed preview", "bold"), f" {header.config}: {steps}"))
    console.print(Text(f"{header.engine}; generation: {_requests_line(header.generation)}"))
    used = ", ".join(
        f"{t['id']} v{t['version']}" + (f" ({t['state']})" if t["state"] != "unchanged" else "")
        for t in header.templates
    )
    console.print(Text(f"prompts: {used or 'none'} from {header.prompts_dir}"))
    if header.other_edits:
        console.print(Text(f"edited, not used by these seeds: {', '.join(header.other_edits)}"))
    on = [c for c in view.checks if c not in view.off]
    legend = f"filter checks: {', '.join(on)}" + (f"; off: {', '.join(view.off)}" if view.off else "")
    console.print(Text(legend, style="dim"))
    for note in header.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    for number, seed_view in enumerate(view.seeds, start=1):
        _print_seed(console, number, len(view.seeds), seed_view, view, max_chars, mark)


def _print_seed(
    console: Console, number: int, total: int, sv: SeedView, view: PreviewView, limit: int, mark: dict[str, str]
) -> None:
    seed = sv.seed
    sep = mark["sep"]
    console.rule(
        Text(f"seed {number}/{total} {sep} {seed['task']} {sep} {sv.template or '?'}", style="bold"), align="left"
    )
    lines = [Text.assemble(("seed ", "bold"), cut(seed.get("question"), limit))]
    if seed.get("context"):
        lines.append(Text(f"     passage: {cut(seed['context'], limit)}", style="dim"))
    if seed.get("options"):
        lines.append(Text(f"     {cut(options_line(seed), limit)}"))
    lines.append(Text(f"     answer: {cut(answer_of(seed), limit)}"))
    for r in sv.refused:
        lines.append(Text(f"  {mark[DROP]} request refused: {cut(r.get('detail'), limit)}", style="red"))
    if not sv.candidates and not sv.refused:
        lines.append(Text("  nothing generated for this seed", style="red"))
    console.print(Group(*lines))
    for c in sv.candidates:
        _print_candidate(console, c, view, limit, mark)


def _print_candidate(console: Console, c: Candidate, view: PreviewView, limit: int, mark: dict[str, str]) -> None:
    head = f"#{c.sample_index} "
    if c.rejected is not None:
        r = c.rejected
        detail = f" ({cut(r.get('detail'), limit // 2)})" if r.get("detail") else ""
        lines = [Text.assemble((head, "bold"), (f"{mark[DROP]} generation: {r.get('reason')}", "red"), detail)]
        if r.get("raw_output"):
            lines.append(Text(f"   raw: {cut(r['raw_output'], limit)}", style="dim"))
        console.print(Group(*lines))
        return
    item = c.item or {}
    written = sum(v.written for v in c.verdicts)
    lines = [
        Text.assemble(
            (head, "bold"),
            f"item {(c.item_id or '')[:8]}: ",
            (f"{c.kept_documents} of {written} documents kept", "green" if c.kept_documents else "red"),
        ),
        Text(f"   Q: {cut(item.get('question'), limit)}"),
    ]
    if item.get("context"):
        lines.append(Text(f"   passage: {cut(item['context'], limit)}", style="dim"))
    if item.get("options"):
        lines.append(Text(f"   {cut(options_line(item), limit)}"))
    lines.append(Text(f"   answer: {cut(answer_of(item), limit)}"))
    e = c.enrichment or {}
    for key in ("reasoning", "knowledge"):
        if e.get(key):
            lines.append(Text(f"   {key}: {cut(e[key], limit)}", style="cyan"))
    for f in c.enrichment_rejected:
        lines.append(
            Text(f"   {mark[DROP]} enrichment: {f.get('reason')} ({cut(f.get('detail'), limit // 2)})", style="red")
        )
    lines += _verdict_lines(c.verdicts, view, mark)
    console.print(Group(*lines))


def _verdict_lines(verdicts: list[Verdict], view: PreviewView, mark: dict[str, str]) -> list[Text]:
    """One line per distinct verdict, naming its documents: the check that dropped them and the
    checks they passed before it (the filter records nothing after the first failure)."""
    on = [c for c in view.checks if c not in view.off]
    groups: dict[tuple, list[Verdict]] = {}
    for v in verdicts:
        key = (
            ("unwritten", v.stage, v.reason) if not v.written else ("kept",) if v.kept else ("drop", v.stage, v.reason)
        )
        groups.setdefault(key, []).append(v)
    width = max((len(", ".join(v.variant for v in group)) for group in groups.values()), default=0)
    lines = []
    for key, group in groups.items():
        names = ", ".join(v.variant for v in group).ljust(width)
        if key[0] == "kept":
            verdict = Text.assemble((f"{mark[PASS]} kept", "green"), (f", passed all {len(on)} checks", "dim"))
        elif key[0] == "drop":
            passed = [c for c in on if group[0].checks.get(c) == PASS]
            verdict = Text.assemble(
                (f"{mark[DROP]} {key[1]}: {key[2]}", "red"),
                (f" (passed {', '.join(SHORT.get(c, c) for c in passed)})" if passed else "", "dim"),
            )
        else:
            verdict = Text(f"{mark[NOT_RECORDED]} not written ({key[1]}: {key[2]})", style="red")
        lines.append(Text.assemble(f"   {names}  ", verdict))
    return lines


def print_footer(console: Console, counts: dict[str, int], reasons: dict[str, int], out: str, log: str | None) -> None:
    console.rule(style="dim")
    console.print(
        f"{counts['seeds']} seeds -> {counts['candidates']} candidates -> {counts['items']} items -> "
        f"{counts['documents']} documents, {counts['kept']} kept by the filter"
    )
    if reasons:
        top = ", ".join(f"{r} {n}" for r, n in list(reasons.items())[:5])
        console.print(Text(f"dropped: {top}"))
    console.print(Text(f"full texts and every check: {out}/preview.md"), soft_wrap=True)
    if log:
        console.print(Text(f"third-party logs: {log}", style="dim"), soft_wrap=True)


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


def fence(text: Any, lang: str = "text") -> str:
    """A fenced block longer than any backtick run inside (generated code carries its own fences)."""
    body = str(text if text is not None else "")
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{body.rstrip()}\n{ticks}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def markdown(header: Header, view: PreviewView, counts: dict[str, int], reasons: dict[str, int]) -> str:
    out: list[str] = [f"# taskseed preview: {header.config}", ""]
    out.append(f"Folder `{header.out}`. {header.engine.capitalize()}.")
    out.append("")
    out.append("| step | seconds |")
    out.append("|---|---:|")
    out.extend(f"| {step} | {seconds:.1f} |" for step, seconds in header.steps.items())
    out.append("")
    out.append(f"Generation: {_requests_line(header.generation)}.")
    out.append("")
    out.append(
        f"{counts['seeds']} seeds -> {counts['candidates']} candidates -> {counts['items']} items -> "
        f"{counts['documents']} documents, {counts['kept']} kept by the filter."
    )
    if reasons:
        out.append("")
        out.append("Dropped: " + ", ".join(f"`{r}` {n}" for r, n in reasons.items()) + ".")
    out += ["", f"## Prompts (`{header.prompts_dir}`)", "", "| template | version | file | since the last preview |"]
    out.append("|---|---|---|---|")
    for t in header.templates:
        out.append(f"| `{t['id']}` | {t['version']} | `{t['file']}` | {t['state']} |")
    if header.other_edits:
        out += ["", "Edited since the last preview, not used by these seeds: " + ", ".join(header.other_edits) + "."]
    out += ["", "## Filter checks", ""]
    out.append(
        "In the filter's order: " + ", ".join(f"`{c}`" + (" (off)" if c in view.off else "") for c in view.checks) + "."
    )
    out.append(
        "The filter records one verdict per dropped document, the first check that failed: the checks before "
        "it passed, and the later ones are *not recorded* (they skip a dropped document). A kept document "
        "passed every check that ran."
    )
    for warning in header.filter.get("warnings") or []:
        out += ["", f"> filter warning: {warning}"]
    for note in header.notes:
        out += ["", f"> note: {note}"]
    for number, sv in enumerate(view.seeds, start=1):
        out += ["", *_seed_markdown(number, len(view.seeds), sv, view)]
    return "\n".join(out).rstrip() + "\n"


def _item_text(item: dict[str, Any]) -> str:
    lines = []
    if item.get("context"):
        lines += [f"Passage: {item['context']}", ""]
    lines.append(f"Question: {item.get('question')}")
    for i, option in enumerate(item.get("options") or []):
        lines.append(f"{LETTERS[i]}. {option}")
    if item.get("tests"):
        lines += ["Tests:", *item["tests"]]
    if item.get("reference") and item["reference"] != item.get("answer_text"):  # code: the program is the answer
        lines += ["Worked solution:", str(item["reference"])]
    lines.append(f"Answer: {answer_of(item)}")
    return "\n".join(lines)


def _seed_markdown(number: int, total: int, sv: SeedView, view: PreviewView) -> list[str]:
    seed = sv.seed
    out = [f"## Seed {number} of {total}: {seed['task']} (`{seed['id']}`), template `{sv.template or '?'}`", ""]
    seed_item = {**seed, "reference": None, "tests": (seed.get("raw") or {}).get("test_list")}
    out += [fence(_item_text(seed_item)), ""]
    for r in sv.refused:
        out += [f"**Request refused**: {_compact(r.get('detail'))}", ""]
    if not sv.candidates and not sv.refused:
        out += ["Nothing was generated for this seed.", ""]
    for c in sv.candidates:
        out += _candidate_markdown(c, view)
    return out


def _candidate_markdown(c: Candidate, view: PreviewView) -> list[str]:
    if c.rejected is not None:
        r = c.rejected
        out = [f"### Sample {c.sample_index}: dropped by generation, `{r.get('reason')}`", ""]
        if r.get("detail"):
            out += [f"Detail: {_compact(r['detail'])}", ""]
        out += ["Raw model output:", "", fence(r.get("raw_output")), ""]
        return out
    written = [v for v in c.verdicts if v.written]
    out = [
        f"### Sample {c.sample_index}: item `{c.item_id}`, {c.kept_documents} of {len(written)} documents kept",
        "",
        fence(_item_text(c.item or {})),
        "",
    ]
    e = c.enrichment
    if e:
        lines = [f"Reasoning: {e.get('reasoning')}"]
        alternatives = e.get("alternatives") or []
        if alternatives:
            lines.append("Alternatives:")
            lines += [f"- {a.get('option')}: {a.get('why_wrong')}" for a in alternatives]
        lines.append(f"Knowledge: {e.get('knowledge')}")
        template = (e.get("lineage") or {}).get("template_id")
        out += [f"Enrichment (template `{template}`):", "", fence("\n".join(lines)), ""]
    for f in c.enrichment_rejected:
        out += [f"Enrichment dropped: `{f.get('reason')}` {_compact(f.get('detail'))}", ""]
        if f.get("raw_output"):
            out += ["Raw enrichment output:", "", fence(f["raw_output"]), ""]
    variants = [v.variant for v in c.verdicts]
    out.append("| check | " + " | ".join(variants) + " |")
    out.append("|---|" + "---|" * len(variants))
    for check in view.checks:
        cells = []
        for v in c.verdicts:
            if not v.written:
                cells.append("not written")
                continue
            state = v.checks.get(check, NOT_RECORDED)
            cells.append(f"**drop**: `{_cell(v.reason)}`" if state == DROP else OFF if state == OFF else state)
        out.append(f"| {check} | " + " | ".join(cells) + " |")
    out.append("| **verdict** | " + " | ".join("kept" if v.kept else "dropped" for v in c.verdicts) + " |")
    out.append("")
    for v in c.verdicts:
        if not v.written:
            out.append(f"- `{v.variant}` was not written: `{v.stage}:{v.reason}` {_compact(v.detail or '')}".rstrip())
        elif not v.kept:
            out.append(f"- `{v.variant}` dropped at `{v.stage}`: `{v.reason}` {_compact(v.detail or '')}".rstrip())
        if v.annotations:
            out.append(f"- `{v.variant}` annotations: {_compact(v.annotations)}")
    out.append("")
    for v in written:
        out += [f"Document `{v.variant}` ({'kept' if v.kept else 'dropped'}):", "", fence(v.text), ""]
    return out
