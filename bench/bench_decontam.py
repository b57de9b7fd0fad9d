"""Decontamination throughput: our n-gram index vs lm-eval's janitor, on the same records.

Benchmark text: every scored split of the default benchmark list that the local mirror holds
(`../shared/fixtures/hf`, read through lm-eval task YAML exactly as the filter stage does).
Records: synthetic Q&A items built from real words, 1% of them embedding a real test question.

Ours: `NgramIndex` (normalized word 13-grams in a dict; a record is checked by set lookups).
Baseline: `lm_eval.decontamination.janitor.Janitor` in its Python mode (its C++ helper is not
shipped in the wheel): `register_contaminant_python` per benchmark row, `clean_python` per
record. Verdicts of both are compared (a record is contaminated when the janitor changes it).

Semantic check (filter/semantic): the same benchmark rows embedded (all-MiniLM-L6-v2 on CPU) in
an exact faiss index; records are embedded and searched as the SemanticDecontaminationStage does.
Embedding dominates and is linear in the records; on this 2-core machine it ran at 6-25
records/s (busy / idle), so 100k records take hours: 10k by default, 100k on request. The faiss search
alone is also timed at 10x the largest size (embedded vectors repeated: search cost does not
depend on the content).

    python bench/bench_decontam.py                 # n-grams at 10k and 100k, semantic at 10k
    python bench/bench_decontam.py --sizes 2000 --semantic-sizes 1000
    python bench/bench_decontam.py --semantic-sizes 10000 100000   # hours on 2 CPU cores
    python bench/bench_decontam.py --semantic-sizes                # n-grams only
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_dedup import vocabulary  # noqa: E402


def benchmark_rows(mirror: Path) -> list[tuple[str, list[str]]]:
    """(split label, strings of the row) for every row of every loaded scored split."""
    from nemo_taskseed.config import load_config
    from nemo_taskseed.filter.decontam.benchmarks import Benchmark, load_split_rows, scored_splits
    from nemo_taskseed.filter.text import string_leaves

    benches = [Benchmark.from_config(b) for b in load_config().filter.decontam.benchmarks]
    rows = []
    for split in scored_splits(benches):
        _, it = load_split_rows(split, "mirror", mirror)
        if it is not None:
            rows += [(split.label, list(string_leaves(r))) for r in it]
    return rows


def synthetic_records(n: int, vocab: list[str], bench: list[tuple[str, list[str]]], seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    questions = [max(strings, key=len) for _, strings in bench]
    out = []
    for _ in range(n):
        q = " ".join(rng.choices(vocab, k=rng.randint(20, 50)))
        opts = " ".join(" ".join(rng.choices(vocab, k=rng.randint(2, 5))) for _ in range(4))
        if rng.random() < 0.01:
            q = "Consider this. " + rng.choice(questions)
        reasoning = " ".join(rng.choices(vocab, k=rng.randint(40, 120)))
        out.append(f"Question: {q}\nOptions: {opts}\nAnswer: {rng.choice(vocab)}\nReasoning: {reasoning}")
    return out


def semantic_bench(mirror: Path, sizes: list[int], vocab: list[str], threshold: float) -> list[dict]:
    """records/s of the semantic check (embed + exact faiss search) at each size."""
    import numpy as np

    from nemo_taskseed.config import load_config
    from nemo_taskseed.filter.decontam.benchmarks import Benchmark, load_split_rows, scored_splits
    from nemo_taskseed.filter.decontam.ngrams import BenchmarkRow
    from nemo_taskseed.filter.semantic import Embedder, SemanticIndex, benchmark_text, item_text
    from nemo_taskseed.filter.semantic.check import flagged
    from nemo_taskseed.filter.step import cached_embeddings

    benches = [Benchmark.from_config(b) for b in load_config().filter.decontam.benchmarks]
    rows, texts = [], []
    for split in scored_splits(benches):
        _, it = load_split_rows(split, "mirror", mirror)
        for i, row in enumerate(it or ()):
            text = benchmark_text(row)
            if text:
                rows.append(BenchmarkRow(split.benchmark, split.label, i))
                texts.append(text)
    embedder = Embedder()
    t0 = time.perf_counter()
    vectors, cached = cached_embeddings(embedder, texts)
    t_bench = time.perf_counter() - t0
    index = SemanticIndex(rows, texts, vectors)
    print(f"semantic: {len(rows)} benchmark rows embedded in {t_bench:.1f}s{' (cache)' if cached else ''}", flush=True)
    out = []
    last_vectors = None
    for n in sizes:
        rng = random.Random(1)
        records = []
        for _ in range(n):
            q = " ".join(rng.choices(vocab, k=rng.randint(12, 40))) + "?"
            if rng.random() < 0.01:  # a test question with one word changed
                words = rng.choice(texts).split(" | ")[0].split()
                words[rng.randrange(len(words))] = rng.choice(vocab)
                q = " ".join(words)
            records.append(
                {"question": q, "options": [" ".join(rng.choices(vocab, k=rng.randint(1, 5))) for _ in range(4)]}
            )
        t0 = time.perf_counter()
        emb = embedder.embed([item_text(r) for r in records])
        t_embed = time.perf_counter() - t0
        t0 = time.perf_counter()
        hits = flagged(index, emb, threshold)
        t_search = time.perf_counter() - t0
        last_vectors = emb
        total = t_embed + t_search
        out.append(
            {
                "records": n,
                "semantic_s": round(total, 1),
                "semantic_rps": round(n / total, 1),
                "embed_rps": round(n / t_embed, 1),
                "search_rps": round(n / max(t_search, 1e-9)),
                "flagged": sum(bool(h) for h in hits),
            }
        )
        r = out[-1]
        print(
            f"{n:>8} records  semantic {r['semantic_s']:>8.1f}s {r['semantic_rps']:>7}/s "
            f"(embed {r['embed_rps']}/s, faiss search {r['search_rps']}/s) flagged {r['flagged']}",
            flush=True,
        )
    if last_vectors is not None:
        big = np.tile(last_vectors, (10, 1))
        t0 = time.perf_counter()
        index.search(big, 3)
        t = time.perf_counter() - t0
        print(f"faiss search alone, {len(big)} vectors against {len(index)} rows: {t:.2f}s ({len(big) / t:.0f}/s)")
        out.append({"records": len(big), "search_only_s": round(t, 2), "search_rps": round(len(big) / t)})
    if len(out) >= 3:
        a, b = out[0], out[-2]
        print(
            f"semantic growth {a['records']} -> {b['records']}: x{b['semantic_s'] / a['semantic_s']:.2f} time "
            f"(linear = x{b['records'] / a['records']:g})"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--ngram", type=int, default=13)
    ap.add_argument("--mirror", type=Path, default=REPO.parent / "shared" / "fixtures" / "hf")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--semantic-sizes", type=int, nargs="*", default=[10_000])
    ap.add_argument("--threshold", type=float, default=0.8)
    args = ap.parse_args()

    # The janitor prints a warning and a traceback when its C++ helper is missing.
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        from lm_eval.decontamination.janitor import Janitor
    from nemo_taskseed.filter.decontam import BenchmarkRow, NgramIndex

    bench = benchmark_rows(args.mirror)
    vocab = vocabulary(args.mirror)

    from _results import publish_output  # bench/_results.py (bench/ is on sys.path when run as a script)

    with publish_output("decontam"):
        t0 = time.perf_counter()
        # short_min_words=0: the janitor has no whole-string rule; compare like with like.
        index = NgramIndex(args.ngram, short_min_words=0)
        for i, (label, strings) in enumerate(bench):
            index.add(BenchmarkRow("bench", label, i), strings)
        t_index = time.perf_counter() - t0
        t0 = time.perf_counter()
        janitor = Janitor(ngram_n=args.ngram)
        for _, strings in bench:
            janitor.register_contaminant_python(" ".join(strings))
        t_janitor_index = time.perf_counter() - t0
        print(
            f"benchmark rows {len(bench)}: our index {len(index)} n-grams in {t_index:.2f}s; "
            f"janitor {len(janitor.dirt_ngrams)} n-grams in {t_janitor_index:.2f}s"
        )

        rows = []
        for n in args.sizes:
            records = synthetic_records(n, vocab, bench)
            t0 = time.perf_counter()
            ours = [index.check([r]) is not None for r in records]
            t_ours = time.perf_counter() - t0
            t0 = time.perf_counter()
            theirs = [janitor.clean_python(r) != [r] for r in records]
            t_base = time.perf_counter() - t0
            agree = sum(a == b for a, b in zip(ours, theirs))
            only_ours = sum(a and not b for a, b in zip(ours, theirs))
            rows.append(
                {
                    "records": n,
                    "ours_s": round(t_ours, 2),
                    "ours_rps": round(n / t_ours),
                    "ours_flagged": sum(ours),
                    "janitor_s": round(t_base, 2),
                    "janitor_rps": round(n / t_base),
                    "janitor_flagged": sum(theirs),
                    "agreement": round(agree / n, 4),
                    "flagged_only_by_ours": only_ours,
                    "flagged_only_by_janitor": sum(b and not a for a, b in zip(ours, theirs)),
                    "speedup": round(t_base / t_ours, 2),
                }
            )
            r = rows[-1]
            print(
                f"{n:>8} records  ours {r['ours_s']:>7.2f}s {r['ours_rps']:>7}/s flagged {r['ours_flagged']:>5}   "
                f"janitor {r['janitor_s']:>7.2f}s {r['janitor_rps']:>7}/s flagged {r['janitor_flagged']:>5}   "
                f"speedup x{r['speedup']}  verdict agreement {r['agreement']:.2%} "
                f"(only ours {r['flagged_only_by_ours']}, only janitor {r['flagged_only_by_janitor']})",
                flush=True,
            )
        if len(rows) >= 2:
            a, b = rows[0], rows[-1]
            scale = b["records"] / a["records"]
            print(
                f"growth {a['records']} -> {b['records']} (x{scale:g} records): ours x{b['ours_s'] / a['ours_s']:.2f} time, "
                f"janitor x{b['janitor_s'] / a['janitor_s']:.2f} time (linear = x{scale:g})"
            )
        print(
            "Disagreements are test items whose text has punctuation-only tokens ('|', '='): the janitor's "
            "clean_python normalizes each n-gram after splitting, so such tokens leave empty words and the n-gram misses."
        )
        semantic = (
            semantic_bench(args.mirror, args.semantic_sizes, vocab, args.threshold) if args.semantic_sizes else []
        )
    if args.json:
        args.json.write_text(json.dumps({"ngram": rows, "semantic": semantic}, indent=2))


if __name__ == "__main__":
    main()
