"""Tokenization throughput: `taskseed tokenize` vs the tokenizer's own batch encoding (the limit)
and vs NeMo Curator's MegatronTokenizerWriter, on the same documents in the same run.

    .venv/bin/python bench/bench_tokenize.py                 # 12k docs, ~2 min on 2 busy cores
    .venv/bin/python bench/bench_tokenize.py --docs 200000   # the full size
    .venv/bin/python bench/bench_tokenize.py --shards 8 --executor ray_data   # Ray start-up included

`taskseed tokenize` makes every input file a shard (a Curator task writing per-shard prefixes and a
done marker), then merges the shards' prefixes on the driver. The single-file rows measure that
whole path on one shard; the `--shards N` row splits the same corpus into N part files, so it adds
N-shard scheduling and the merge (every run starts from an empty output folder: done markers
would otherwise make repeats skip the work).

Documents are built from real benchmark *training* rows in ../shared/fixtures/hf (question,
options, answer), repeated up to --docs. Each method's best of --repeats runs is reported, as
tokens per second over the same content tokens (EOD excluded), and as a ratio to the baseline.
Goal from issue 5: taskseed >= 0.85 x the tokenizer's batch encoding.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TASKSEED_CACHE_DIR", str(REPO / ".cache"))
warnings.filterwarnings("ignore")
FIXTURES = REPO.parent / "shared" / "fixtures" / "hf"


def fixture_texts() -> list[dict]:
    """Pretraining documents from fixture training splits (never eval splits)."""
    docs = []

    def mc(path, family, kind, question_key="question"):
        for line in open(FIXTURES / path):
            row = json.loads(line)
            labels, options = row["choices"]["label"], row["choices"]["text"]
            answer = options[labels.index(row["answerKey"])]
            body = "\n".join(
                [f"Question: {row[question_key]}"] + [f"{label}. {t}" for label, t in zip(labels, options)]
            )
            docs.append({"text": f"{body}\nAnswer: {answer}", "family": family, "kind": kind, "variant": "answer"})

    mc("allenai/ai2_arc/ARC-Easy/train.jsonl", "arc_easy", "knowledge")
    mc("tau/commonsense_qa/default/train.jsonl", "commonsense_qa", "knowledge")
    mc("allenai/openbookqa/main/train.jsonl", "openbookqa", "knowledge", question_key="question_stem")
    for line in open(FIXTURES / "openai/gsm8k/main/train.jsonl"):
        row = json.loads(line)
        docs.append(
            {
                "text": f"Question: {row['question']}\nAnswer: {row['answer']}",
                "family": "gsm8k",
                "kind": "reasoning",
                "variant": "reasoning",
            }
        )
    for line in open(FIXTURES / "google-research-datasets/mbpp/full/train.jsonl"):
        row = json.loads(line)
        docs.append(
            {"text": f"{row['text']}\n{row['code']}", "family": "mbpp", "kind": "reasoning", "variant": "reasoning"}
        )
    return docs


def build_corpus(n_docs: int, out: Path, parts_dir: Path, shards: int) -> tuple[list[str], list[Path]]:
    """The corpus as one JSONL file, and the same lines split into `shards` contiguous part files."""
    base = fixture_texts()
    rows = [dict(base[i % len(base)]) for i in range(n_docs)]
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in rows]
    out.write_text("".join(lines))
    parts_dir.mkdir(parents=True, exist_ok=True)
    size = -(-len(lines) // max(1, shards))
    parts = []
    for i in range(max(1, shards)):
        part = parts_dir / f"part-bench.{i:05d}.jsonl"
        part.write_text("".join(lines[i * size : (i + 1) * size]))
        parts.append(part)
    return [r["text"] for r in rows], parts


class Timer:
    """Best wall time and best CPU time (user+sys of this process and reaped workers) over runs."""

    def __init__(self, name: str):
        self.name, self.wall, self.cpu, self.result = name, float("inf"), float("inf"), None

    def run(self, fn):
        c0, w0 = os.times(), time.perf_counter()
        self.result = fn()
        w1, c1 = time.perf_counter(), os.times()
        self.wall = min(self.wall, w1 - w0)
        self.cpu = min(self.cpu, sum(c1[:4]) - sum(c0[:4]))
        return self.result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=12_000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="taskseed worker counts to try")
    parser.add_argument("--shards", type=int, default=4, help="also tokenize the corpus as N part files (0: skip)")
    parser.add_argument(
        "--executor",
        default="inline",
        choices=["inline", "ray_data", "xenna"],
        help="Curator executor for the --shards run (the single-file rows run inline)",
    )
    parser.add_argument("--no-curator", action="store_true")
    args = parser.parse_args()

    from _results import publish_output  # bench/_results.py (bench/ is on sys.path when run as a script)

    from nemo_taskseed.config import load_config
    from nemo_taskseed.models import prepare_model
    from nemo_taskseed.tokenize import TokenizeOptions, tokenize_files
    from nemo_taskseed.tokenize.encoder import load_hf_tokenizer

    model_dir = str(prepare_model())
    tmp = Path(tempfile.mkdtemp(prefix="bench-tokenize-"))
    try:
        corpus = tmp / "corpus.jsonl"
        texts, parts = build_corpus(args.docs, corpus, tmp / "parts", args.shards)
        started = time.perf_counter()
        tokenizer = load_hf_tokenizer(model_dir)
        load_seconds = time.perf_counter() - started
        print(
            f"corpus: {len(texts):,} documents, {corpus.stat().st_size / 1e6:.1f} MB JSONL; tokenizer {model_dir} "
            f"(vocab {len(tokenizer)}); cores: {os.cpu_count()}; best of {args.repeats} interleaved runs"
        )

        def baseline() -> int:
            n = 0
            for i in range(0, len(texts), args.batch_size):
                ids = tokenizer(texts[i : i + args.batch_size], add_special_tokens=False)["input_ids"]
                n += sum(map(len, ids))
            return n

        def ours(workers: int, files: list[Path], executor: str = "inline"):
            opts = TokenizeOptions.from_config(
                load_config(), model_dir, batch_size=args.batch_size, workers=workers, progress=False, executor=executor
            )
            out = tmp / f"out-{workers}-{len(files)}"

            def run():
                shutil.rmtree(out, ignore_errors=True)  # no done markers: every repeat does all the work
                # The preloaded tokenizer puts taskseed on the baseline's footing (load time is reported apart).
                return tokenize_files(files, out, opts, hf_tokenizer=tokenizer)

            return run

        methods = [(Timer("tokenizer(batch) in memory [baseline]"), baseline)]
        methods += [
            (Timer(f"taskseed tokenize, workers={w} (JSONL -> .bin/.idx + read-back)"), ours(w, [corpus]))
            for w in args.workers
        ]
        if args.shards > 1:
            methods.append(
                (
                    Timer(f"taskseed tokenize, {args.shards} shards on {args.executor} + merge"),
                    ours(1, parts, args.executor),
                )
            )
        curator = None if args.no_curator else curator_runner(corpus, model_dir, tmp, args)
        if curator is not None:
            methods.append((Timer("Curator MegatronTokenizerWriter (+ batch_encode_plus shim)"), curator))
        # Interleaved repeats: load on a shared machine drifts, and every method sees the same drift.
        for _ in range(args.repeats):
            for timer, fn in methods:
                timer.run(fn)
        content_tokens = methods[0][0].result
        for timer, _ in methods[1:]:
            result = timer.result
            written = result["totals"]["tokens"] - result["totals"]["documents"] if isinstance(result, dict) else result
            assert written == content_tokens, (timer.name, written, content_tokens)

        with publish_output("tokenize"):
            base = methods[0][0]
            print(f"\n{'method':<64} {'wall s':>7} {'tokens/s':>10} {'ratio':>6} {'cpu s':>7} {'ratio':>6}")
            for timer, _ in methods:
                print(
                    f"{timer.name:<64} {timer.wall:>7.2f} {content_tokens / timer.wall:>10,.0f} "
                    f"{base.wall / timer.wall:>6.3f} {timer.cpu:>7.2f} {base.cpu / timer.cpu:>6.3f}"
                )
            print(
                f"\n{content_tokens:,} content tokens per run (EOD excluded); ratio = baseline time / method time "
                f"(goal: taskseed >= 0.85). Tokenizer load, paid once per run and excluded: {load_seconds:.2f} s"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def curator_runner(corpus: Path, model_dir: str, tmp: Path, args):
    """Curator's writer stage called directly (no Ray start-up in the timing), JSONL read included.

    Returns a callable giving content tokens, or None when the stage cannot be made to run.
    """
    import pandas as pd
    from nemo_curator.stages.text.io.writer.megatron_tokenizer import MegatronTokenizerWriter
    from nemo_curator.tasks import DocumentBatch

    from nemo_taskseed.compat import curator_megatron_writer_transformers5

    try:
        from loguru import logger

        logger.remove()  # Curator logs every write at INFO
        writer = MegatronTokenizerWriter(
            path=str(tmp / "curator"),
            model_identifier=model_dir,
            append_eod=True,
            tokenization_batch_size=args.batch_size,
            mode="overwrite",
        )
        writer.setup()
        try:
            writer.process(
                DocumentBatch(
                    dataset_name="probe", data=pd.DataFrame({"text": ["probe"]}), _metadata={"source_files": ["probe"]}
                )
            )
            print("Curator MegatronTokenizerWriter runs unpatched")
        except Exception as exc:  # transformers 5.x removed batch_encode_plus; the error path then hits fs.remove
            cause = exc.__context__ or exc
            print(
                f"Curator MegatronTokenizerWriter unpatched fails: {type(cause).__name__}: {str(cause)[:80]}"
                + (f" (then {type(exc).__name__}: {str(exc)[:60]})" if cause is not exc else "")
            )
        curator_megatron_writer_transformers5(writer)
    except Exception as exc:
        print(f"Curator MegatronTokenizerWriter cannot be set up: {type(exc).__name__}: {exc}")
        return None

    def run() -> int:
        frame = pd.read_json(corpus, lines=True)[["text"]]
        task = DocumentBatch(dataset_name="bench", data=frame, _metadata={"source_files": [str(corpus)]})
        return writer.process(task)._metadata["num_tokens"] - len(frame)  # minus one EOD per document

    return run


if __name__ == "__main__":
    sys.exit(main())
