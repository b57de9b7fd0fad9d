"""Fuzzy dedup throughput: the filter's sharded MinHash+LSH path vs datasketch's MinHashLSH used directly.

Both sides use the same shingles (word 3-grams of normalized text), num_perm, threshold and
datasketch's MinHashLSH; they differ in how signatures are built: ours hashes each document's
shingles in one `MinHash.bulk` call (numpy), the baseline calls `MinHash.update` per shingle,
as datasketch's README does. Records are synthetic Q&A items built from real words of the
benchmark fixtures (or a built-in word list), with planted exact and near copies.

    python bench/bench_dedup.py                 # 10k and 100k records
    python bench/bench_dedup.py --sizes 2000    # quick check
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FALLBACK_WORDS = (
    "the of and a to in is you that it he was for on are as with his they at be this have from or one had by "
    "word but not what all were we when your can said there use an each which she do how their if will up other "
    "about out many then them these so some her would make like him into time has look two more write go see "
    "number no way could people my than first water been call who oil its now find long down day did get come "
    "made may part plant energy cell force mass heat light sound rock soil cloud river animal teacher student"
).split()


def vocabulary(fixtures: Path | None) -> list[str]:
    words: set[str] = set()
    if fixtures and fixtures.is_dir():
        for f in sorted(fixtures.rglob("*.jsonl"))[:40]:
            for line in f.read_text(encoding="utf-8").splitlines()[:200]:
                for v in json.loads(line).values():
                    if isinstance(v, str):
                        words.update(w.strip(".,?!;:()\"'").lower() for w in v.split())
    words.discard("")
    return sorted(words) if len(words) > 1000 else FALLBACK_WORDS


def synthetic_items(n: int, vocab: list[str], seed: int = 0) -> list[str]:
    """n item texts (question + 4 options); 2% exact copies and 5% one-word near copies."""
    rng = random.Random(seed)
    items: list[str] = []
    for _ in range(n):
        r = rng.random()
        if items and r < 0.02:
            items.append(items[rng.randrange(len(items))])
        elif items and r < 0.07:
            words = items[rng.randrange(len(items))].split()
            words[rng.randrange(len(words))] = rng.choice(vocab)
            items.append(" ".join(words))
        else:
            q = " ".join(rng.choices(vocab, k=rng.randint(20, 50)))
            opts = [" ".join(rng.choices(vocab, k=rng.randint(2, 5))) for _ in range(4)]
            items.append(q + "? " + " ".join(opts))
    return items


def run_ours(
    texts: list[str], threshold: float, num_perm: int, ngram: int, shard_size: int = 10_000
) -> tuple[float, int]:
    """The filter's path: signatures per shard (saved as the filter saves them), then the global
    resolution over all shards (`dedup.sharded.resolve`)."""
    import tempfile

    from nemo_taskseed.filter.dedup import DedupSettings, resolve, signatures_for

    settings = DedupSettings(
        fields=("question",), exact=False, fuzzy=True, threshold=threshold, num_perm=num_perm, ngram_size=ngram, seed=1
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        prefixes = []
        for start in range(0, len(texts), shard_size):
            items = [
                (f"{i:016x}", "0" * 16, {"question": t}) for i, t in enumerate(texts[start : start + shard_size], start)
            ]
            prefixes.append(Path(tmp) / f"part{start}")
            signatures_for(items, settings).save(prefixes[-1])
        drops = resolve(prefixes, settings)
    return time.perf_counter() - t0, sum(len(d) for d in drops.values())


def run_baseline(texts: list[str], threshold: float, num_perm: int, ngram: int) -> tuple[float, int]:
    """datasketch as documented: MinHash.update per shingle, MinHashLSH query then insert."""
    from datasketch import MinHash, MinHashLSH

    from nemo_taskseed.filter.dedup import shingles

    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sigs = {}
    dropped = 0
    for i, text in enumerate(texts):
        sh = shingles(text, ngram)
        if not sh:
            continue
        m = MinHash(num_perm=num_perm, seed=1)
        for s in sh:
            m.update(s)
        if any(m.jaccard(sigs[c]) >= threshold for c in lsh.query(m)):
            dropped += 1
            continue
        lsh.insert(str(i), m)
        sigs[str(i)] = m
    return time.perf_counter() - t0, dropped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--ngram", type=int, default=3)
    ap.add_argument("--fixtures", type=Path, default=REPO.parent / "shared" / "fixtures" / "hf")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    import datasketch  # noqa: F401 - imports (~1-7 s under load) stay out of the timings
    from _results import publish_output  # bench/_results.py (bench/ is on sys.path when run as a script)

    import nemo_taskseed.filter.dedup  # noqa: F401

    vocab = vocabulary(args.fixtures)
    with publish_output("dedup"):
        rows = []
        for n in args.sizes:
            texts = synthetic_items(n, vocab)
            t_ours, d_ours = run_ours(texts, args.threshold, args.num_perm, args.ngram)
            t_base, d_base = run_baseline(texts, args.threshold, args.num_perm, args.ngram)
            rows.append(
                {
                    "records": n,
                    "ours_s": round(t_ours, 2),
                    "ours_rps": round(n / t_ours),
                    "ours_dropped": d_ours,
                    "baseline_s": round(t_base, 2),
                    "baseline_rps": round(n / t_base),
                    "baseline_dropped": d_base,
                    "speedup": round(t_base / t_ours, 2),
                }
            )
            r = rows[-1]
            print(
                f"{n:>8} records  ours {r['ours_s']:>8.2f}s {r['ours_rps']:>7}/s dropped {d_ours:>6}   "
                f"datasketch-direct {r['baseline_s']:>8.2f}s {r['baseline_rps']:>7}/s dropped {d_base:>6}   "
                f"speedup x{r['speedup']}",
                flush=True,
            )
        if len(rows) >= 2:
            a, b = rows[0], rows[-1]
            scale = b["records"] / a["records"]
            print(
                f"growth {a['records']} -> {b['records']} (x{scale:g} records): ours x{b['ours_s'] / a['ours_s']:.2f} time, "
                f"baseline x{b['baseline_s'] / a['baseline_s']:.2f} time (linear = x{scale:g})"
            )
        print(
            f"vocabulary {len(vocab)} words; threshold {args.threshold}, num_perm {args.num_perm}, word {args.ngram}-grams"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
