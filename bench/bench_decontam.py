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

Semantic dedup (filter/semantic/dedup.py, block `bench:decontam.semdedup`): pair recall of the
clustered path against the exact all-pairs path on ~2,900 real fixture items with reworded copies
(embeddings cached), then time and peak RSS (a fresh process per run) of both paths over 10k-item
shards of synthetic vectors (real embeddings plus noise, 5 % near copies) at 10k and 100k items.

    python bench/bench_decontam.py --semdedup-only                 # ~6 min; exact at 100k is most of it
    python bench/bench_decontam.py --semdedup-only --semdedup-sizes 10000 --semdedup-modes clustered
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
    from nemo_taskseed.filter.indexes import cached_embeddings
    from nemo_taskseed.filter.semantic import Embedder, SemanticIndex, item_text
    from nemo_taskseed.filter.semantic.check import flagged
    from nemo_taskseed.filter.semantic.views import raw_item_text

    benches = [Benchmark.from_config(b) for b in load_config().filter.decontam.benchmarks]
    rows, texts = [], []
    for split in scored_splits(benches):
        _, it = load_split_rows(split, "mirror", mirror)
        for i, row in enumerate(it or ()):
            text = raw_item_text(row)
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


# -- semantic dedup: clustered (k-means buckets) vs exact all-pairs ---------------------------

EDIT_SYNONYMS = {
    "largest": "biggest",
    "large": "big",
    "small": "little",
    "Which": "What",
    "which": "what",
    "people": "folks",
    "buy": "purchase",
    "uses": "utilizes",
    "use": "utilize",
    "makes": "produces",
    "help": "assist",
    "shows": "demonstrates",
    "likely": "probably",
    "student": "pupil",
    "each": "every",
    "total": "overall",
    "many": "numerous",
    "found": "discovered",
    "made": "created",
    "after": "following",
    "because": "since",
    "bought": "purchased",
    "has": "has got",
    "best": "most accurately",
}
FILLER = {"the", "a", "very", "that", "also", "really", "of"}


def _edit(text: str, rng: random.Random) -> str:
    """A light rewording of an item text: 1-3 edits (synonym, dropped filler word, changed number,
    two neighbouring words swapped). Most copies land near the 0.95 threshold, some above, some below."""
    question, sep, options = text.partition(" | ")
    words = question.split()
    for _ in range(rng.randint(1, 3)):
        if len(words) < 4:
            break
        i = rng.randrange(len(words))
        core = words[i].strip(".,?!:;")
        kind = rng.random()
        if core in EDIT_SYNONYMS:
            words[i] = words[i].replace(core, EDIT_SYNONYMS[core])
        elif core.isdigit():
            words[i] = words[i].replace(core, str(int(core) + rng.randint(1, 9)))
        elif core.lower() in FILLER or kind < 0.4:
            del words[i]
        elif i + 1 < len(words):
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words) + sep + options


def semdedup_texts(mirror: Path, share: float = 0.3, seed: int = 5) -> list[str]:
    """Every row of every fixture split (~2,200 real benchmark/training items) as the item text the
    semantic stage embeds, plus a reworded copy of `share` of them (~2,900 texts in all)."""
    from nemo_taskseed.filter.semantic.views import raw_item_text

    texts = []
    for path in sorted(mirror.rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            text = raw_item_text(json.loads(line))
            if text:
                texts.append(text)
    rng = random.Random(seed)
    return texts + [_edit(t, rng) for t in texts if rng.random() < share]


def _ids(n: int, salt: str = "") -> list[str]:
    import hashlib

    return [hashlib.blake2b(f"{salt}{i}".encode(), digest_size=8).hexdigest() for i in range(n)]


def semdedup_recall(mirror: Path, threshold: float) -> list[dict]:
    """Share of the exact path's duplicate pairs whose two items share a bucket in the clustered
    path (pair recall), and whether the drops are the same, for a few cluster sizes and margins."""
    import numpy as np

    from nemo_taskseed.config import load_config
    from nemo_taskseed.filter.indexes import cached_embeddings
    from nemo_taskseed.filter.semantic import Embedder
    from nemo_taskseed.filter.semantic.dedup import SemanticDedupSettings, assign, semantic_duplicates, train_centroids
    from nemo_taskseed.filter.semantic.store import Embedded

    texts = semdedup_texts(mirror)
    t0 = time.perf_counter()
    vectors, cached = cached_embeddings(Embedder(), texts)
    print(
        f"recall set: {len(texts)} real item texts (fixture rows + reworded copies), embedded in "
        f"{time.perf_counter() - t0:.1f}s{' (cache)' if cached else ''}"
    )
    ids = _ids(len(texts))
    items = Embedded(ids, ["s"] * len(ids), ["f"] * len(ids), texts, vectors).sorted_by_id()
    lims, dist, nbr = _range(items.vectors, threshold)
    rows = np.repeat(np.arange(len(items.ids)), np.diff(lims.astype(np.int64)))
    ok = (rows < nbr) & (np.round(dist, 4) >= threshold)
    pairs = np.stack([rows[ok], nbr[ok]], axis=1)
    exact = semantic_duplicates(items, Embedded(), SemanticDedupSettings.from_config(load_config()), threshold)
    print(f"exact all-pairs: {len(pairs)} pairs >= {threshold}, {len(exact)} items dropped")
    out = []
    for cluster_size in (1000, 500, 250, 100, 50):
        for margin in (0.0, 0.02, 0.05) if cluster_size >= 250 else (0.0, 0.02):
            s = SemanticDedupSettings.from_config(
                load_config(), threshold=threshold, exact_max_items=0, cluster_size=cluster_size, second_margin=margin
            )
            part = _Mem(items)
            centroids = train_centroids([part], s)
            first, second = assign(items.vectors, centroids, margin)
            member = [{int(a)} | ({int(b)} if b >= 0 else set()) for a, b in zip(first, second)]
            shared = sum(bool(member[a] & member[b]) for a, b in pairs.tolist())
            drops = semantic_duplicates(items, Embedded(), s)
            same = {(d.item_id, d.reason) for d in drops} == {(d.item_id, d.reason) for d in exact}
            out.append(
                {
                    "cluster_size": cluster_size,
                    "clusters": len(centroids),
                    "margin": margin,
                    "placements_per_item": round(sum(map(len, member)) / len(member), 3),
                    "pair_recall": round(shared / max(1, len(pairs)), 4),
                    "pairs": len(pairs),
                    "found": shared,
                    "drops": len(drops),
                    "exact_drops": len(exact),
                    "same_drops": same,
                }
            )
            r = out[-1]
            print(
                f"  cluster_size {cluster_size:>5} ({r['clusters']:>2} clusters) margin {margin:<4}: "
                f"{r['placements_per_item']:.2f} placements/item, pair recall {r['found']}/{r['pairs']} = "
                f"{r['pair_recall']:.2%}, drops {r['drops']} vs exact {r['exact_drops']}"
                f"{' (same items)' if same else ''}",
                flush=True,
            )
    return out


class _Mem:
    def __init__(self, emb):
        import numpy as np

        from nemo_taskseed.filter.dedup.sharded import key_of

        self.count, self.keys = len(emb.ids), np.array([key_of(i) for i in emb.ids], dtype=np.uint64)
        self.keep, self._v = np.ones(self.count, dtype=bool), emb.vectors

    def vectors(self):
        return self._v


def _range(vectors, threshold: float):
    from nemo_taskseed.filter.semantic.index import flat_index

    return flat_index(vectors).range_search(vectors, threshold - 1e-4)


def synthetic_vectors(base, n: int, seed: int = 0):
    """n unit vectors around real embeddings (`base`): each a base vector plus noise (cosine ~0.8
    to it, ~0.65 to a sibling: distinct items on one topic), 5 % of them near copies of an earlier
    one (cosine ~0.97-0.99)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        v = base[rng.integers(0, len(base), m)] + rng.normal(scale=0.035, size=(m, base.shape[1]))
        out[start : start + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    copies = rng.choice(np.arange(1, n), size=n // 20, replace=False)
    src = (rng.random(len(copies)) * copies).astype(np.int64)
    v = out[src] + rng.normal(scale=rng.uniform(0.004, 0.01, size=(len(copies), 1)), size=(len(copies), base.shape[1]))
    out[copies] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def _peak_rss_mb() -> float:
    """VmHWM of this process: unlike ru_maxrss (kept across exec, so a child started from a big
    parent reports the parent's peak), it starts afresh with the new program."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def semdedup_child(folder: Path, mode: str) -> None:
    """Run in a fresh process: semantic dedup over the shard files in `folder`; prints JSON with
    seconds and peak RSS, so the peak is this run's and nothing else's. Modes: default (the
    config: exact up to 20k items + seeds, clustered above), clustered (forced), exact (forced)."""
    import faiss  # noqa: F401  (import cost is part of the baseline RSS)

    from nemo_taskseed.config import load_config
    from nemo_taskseed.filter.semantic import dedup as sd

    base_rss = _peak_rss_mb()
    items = sorted(folder.glob("items-*.json"))
    seeds = sorted(folder.glob("seeds-*.json"))
    prefixes = [p.with_suffix("") for p in items]
    seed_prefixes = [p.with_suffix("") for p in seeds]
    s = {
        "default": sd.SemanticDedupSettings.from_config(load_config()),
        "clustered": sd.SemanticDedupSettings.from_config(load_config(), exact_max_items=0),
        "exact": sd.SemanticDedupSettings.from_config(load_config(), exact_max_items=10**12),
    }[mode]
    sd.LAST_STATS.clear()
    t0 = time.perf_counter()
    drops = sd.semantic_duplicates_sharded(prefixes, seed_prefixes, s, folder / "buckets")
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": _peak_rss_mb(),
                "base_rss_mb": base_rss,
                "drops": len(drops),
                "ids": sorted(d.item_id for d in drops),
                "digest": _digest(drops),
                **{f"stat_{k}": v for k, v in sd.LAST_STATS.items()},
            }
        )
    )


def _digest(drops) -> str:
    import hashlib

    h = hashlib.sha256()
    for d in sorted(drops, key=lambda d: d.item_id):
        h.update(f"{d.item_id} {d.reason} {d.detail.get('kept_item_id') or d.detail.get('seed_id')}\n".encode())
    return h.hexdigest()[:12]


def semdedup_bench(mirror: Path, sizes: list[int], modes: list[str], shard_size: int = 10_000) -> list[dict]:
    """records/s and peak RSS of semantic dedup alone (embeddings given, as saved per shard) at each size."""
    import subprocess
    import tempfile

    from nemo_taskseed.filter.indexes import cached_embeddings
    from nemo_taskseed.filter.semantic import Embedder
    from nemo_taskseed.filter.semantic.store import Embedded

    base, _ = cached_embeddings(Embedder(), semdedup_texts(mirror))
    out = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="semdedup-bench-") as tmp:
            folder = Path(tmp)
            vec = synthetic_vectors(base, n + n // 16, seed=n)
            ids = _ids(n, "item")
            seed_ids = _ids(n // 16, "seed")
            for k in range(0, n, shard_size):
                sl = slice(k, min(n, k + shard_size))
                Embedded(
                    ids[sl],
                    [seed_ids[i % max(1, len(seed_ids))] for i in range(sl.start, sl.stop)],
                    ["f"] * (sl.stop - sl.start),
                    [f"item {i}" for i in range(sl.start, sl.stop)],
                    vec[sl],
                ).save(folder / f"items-{k // shard_size:05d}")
            Embedded(
                seed_ids, seed_ids, ["f"] * len(seed_ids), [f"seed {i}" for i in range(len(seed_ids))], vec[n:]
            ).save(folder / "seeds-00000")
            del vec
            exact_ids = None
            for mode in sorted(modes, key=lambda m: m != "exact"):  # exact first: the others are compared with it
                proc = subprocess.run(
                    [sys.executable, __file__, "--semdedup-child", str(folder), mode],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                ids = set(r.pop("ids"))
                if mode == "exact":
                    exact_ids = ids
                row = {
                    "records": n,
                    "seeds": len(seed_ids),
                    "mode": mode,
                    "seconds": round(r["seconds"], 1),
                    "rps": round(n / r["seconds"]),
                    "peak_rss_mb": round(r["peak_rss_mb"]),
                    "base_rss_mb": round(r["base_rss_mb"]),
                    "drops": r["drops"],
                    "digest": r["digest"],
                    "clusters": r.get("stat_centroids"),
                    "largest_bucket": r.get("stat_largest_bucket"),
                }
                out.append(row)
                extra = (
                    f", {row['clusters']} clusters, largest bucket {row['largest_bucket']}" if row["clusters"] else ""
                )
                if mode != "exact" and exact_ids is not None:
                    row["recall_vs_exact"] = round(len(ids & exact_ids) / max(1, len(exact_ids)), 4)
                    row["not_in_exact"] = len(ids - exact_ids)
                    extra += f"; drops {row['recall_vs_exact']:.2%} of exact's, {row['not_in_exact']} others"
                print(
                    f"{n:>8} items + {len(seed_ids)} seeds  {mode:<9} {row['seconds']:>7.1f}s {row['rps']:>7}/s  "
                    f"peak RSS {row['peak_rss_mb']} MB (after imports {row['base_rss_mb']} MB)  "
                    f"drops {row['drops']} [{row['digest']}]{extra}",
                    flush=True,
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
    ap.add_argument("--semdedup-sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument(
        "--semdedup-modes", nargs="+", default=["clustered", "exact"], choices=["default", "clustered", "exact"]
    )
    ap.add_argument("--semdedup-only", action="store_true", help="only the semantic dedup block")
    ap.add_argument("--semdedup-child", nargs=2, metavar=("FOLDER", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.semdedup_child:
        semdedup_child(Path(args.semdedup_child[0]), args.semdedup_child[1])
        return
    if args.semdedup_sizes or args.semdedup_only:
        from _results import publish_output

        with publish_output("decontam.semdedup"):
            print("Semantic dedup (filter/semantic/dedup.py), threshold 0.95.")
            recall = semdedup_recall(args.mirror, 0.95)
            speed = semdedup_bench(args.mirror, args.semdedup_sizes, args.semdedup_modes)
        if args.semdedup_only:
            if args.json:
                args.json.write_text(json.dumps({"semdedup_recall": recall, "semdedup": speed}, indent=2))
            return

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
        word_order = word_order_cost(bench, synthetic_records(args.sizes[0], vocab, bench), args.ngram)
        semantic = (
            semantic_bench(args.mirror, args.semantic_sizes, vocab, args.threshold) if args.semantic_sizes else []
        )
    if args.json:
        args.json.write_text(json.dumps({"ngram": rows, "word_order": word_order, "semantic": semantic}, indent=2))


def word_order_cost(bench, records: list[str], ngram: int) -> dict:
    """The filter's defaults (short strings of 5-12 words matched whole; `filter.decontam.unordered`:
    windows also matched as bags of words) against the same index without the bags: index and check
    time, and what each flags, on the same records."""
    from nemo_taskseed.filter.decontam import BenchmarkRow, NgramIndex

    out = {}
    for label, unordered in (("ordered", False), ("unordered", True)):
        t0 = time.perf_counter()
        index = NgramIndex(ngram, short_min_words=5, unordered=unordered)
        for i, (split, strings) in enumerate(bench):
            index.add(BenchmarkRow("bench", split, i), strings)
        t_index = time.perf_counter() - t0
        t0 = time.perf_counter()
        flagged = sum(index.check([r]) is not None for r in records)
        t_check = time.perf_counter() - t0
        out[label] = {"index_s": round(t_index, 2), "check_s": round(t_check, 2), "flagged": flagged}
    a, b = out["ordered"], out["unordered"]
    print(
        f"word order, {len(records)} records at the filter's defaults: ordered only {a['check_s']:.2f}s "
        f"(index {a['index_s']:.2f}s, flagged {a['flagged']}), with unordered bags {b['check_s']:.2f}s "
        f"(index {b['index_s']:.2f}s, flagged {b['flagged']}): x{b['check_s'] / a['check_s']:.2f} the check time"
    )
    return out


if __name__ == "__main__":
    main()
