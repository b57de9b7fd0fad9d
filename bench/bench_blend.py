"""Blend verification time and peak memory at 1B, 10B and 100B tokens (seq_length 4096).

    .venv/bin/python bench/bench_blend.py                          # indices at 1B/10B/100B + real build at 1B
    .venv/bin/python bench/bench_blend.py --build-tokens 1e9 1e10  # also a real 10B GPTDataset build

Each measurement runs in a fresh process, so peak RSS (ru_maxrss) is that measurement's own.
Baseline, in the same run: megatron-core's bare `helpers.build_blending_indices` call at the same
size and weights (what BlendedDataset does internally). `taskseed blend verify` adds the plan
read, the builder's size/weight replay, per-dataset counts and the tolerance check on top.
Issue 5 limit for 100B tokens (24.4M samples): under 60 s and under 4 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("TASKSEED_CACHE_DIR", str(REPO / ".cache"))
warnings.filterwarnings("ignore")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def child(mode: str, plan_path: str) -> None:
    """Runs in a fresh interpreter; prints one JSON line."""
    import numpy as np

    from nemo_taskseed.blend.verify import _megatron

    # Imports (torch + megatron.core: ~10 s on a busy 2-core box) are paid before any timer starts;
    # `process s` in the table includes them.
    for module in ("helpers", "utils", "blended_megatron_dataset_builder", "gpt_dataset"):
        _megatron(module)
    plan = json.loads(Path(plan_path).read_text())
    before = peak_mb()
    started = time.perf_counter()
    if mode == "baseline":
        helpers = _megatron("helpers")
        weights = np.asarray([w for w, _ in plan["data_paths"]], dtype=np.float64)
        size = int(plan["total_samples"])
        dataset_index = np.zeros(size, dtype=np.int16)
        dataset_sample_index = np.zeros(size, dtype=np.int64)
        started = time.perf_counter()  # imports excluded, as for the other modes
        helpers.build_blending_indices(dataset_index, dataset_sample_index, weights, len(weights), size, False)
        samples, ok = size, True
    else:
        from nemo_taskseed.blend.verify import verify_plan

        if mode == "verify":
            report = verify_plan(plan, None, build="never")
            samples = report["indices"]["samples"]
        else:  # real BlendedMegatronDatasetBuilder + GPTDataset build of every planned sample
            report = verify_plan(
                plan,
                plan["tokenizer"]["path"],
                build="always",
                build_max_samples=plan["total_samples"],
                read_samples=16,
            )
            samples = report["build"]["samples"]
        ok = report["ok"]
    seconds = time.perf_counter() - started
    print(
        json.dumps({"seconds": seconds, "peak_mb": peak_mb(), "import_peak_mb": before, "samples": samples, "ok": ok})
    )


def measure(mode: str, plan_path: Path) -> dict:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(plan_path)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started  # python start-up and imports included
    return result


def make_plans(tmp: Path, token_sizes: list[float], build_sizes: list[float]) -> dict:
    from bench_tokenize import build_corpus

    from nemo_taskseed.blend import plan_from_config
    from nemo_taskseed.config import load_config
    from nemo_taskseed.models import prepare_model
    from nemo_taskseed.tokenize import TokenizeOptions, tokenize_files

    build_corpus(1200, tmp / "synthetic.jsonl", tmp / "parts", 1)
    tokenize_files(
        [tmp / "synthetic.jsonl"],
        tmp / "tok",
        TokenizeOptions.from_config(load_config(), str(prepare_model()), progress=False),
    )
    plans = {}
    for tokens in token_sizes:
        # Against the example 3-dataset pretraining blend (cluster paths: indices only).
        cfg = load_config(
            None,
            [
                f"blend.manifest={tmp / 'tok'}",
                "blend.existing=example_pretraining",
                "blend.require_existing_prefixes=false",
                f"blend.total_tokens={int(tokens)}",
                "blend.max_epochs=null",
                "blend.group_quotas.knowledge=0.5",
                "blend.group_quotas.reasoning=0.5",
            ],
        )
        path = tmp / f"plan-{tokens:.0e}.json"
        path.write_text(json.dumps(plan_from_config(cfg.blend)))
        plans[("indices", tokens)] = path
    for tokens in build_sizes:
        cfg = load_config(
            None,
            [
                f"blend.manifest={tmp / 'tok'}",
                f"blend.total_tokens={int(tokens)}",
                "blend.synthetic_share=1",
                "blend.max_epochs=null",
            ],
        )
        path = tmp / f"plan-build-{tokens:.0e}.json"
        path.write_text(json.dumps(plan_from_config(cfg.blend)))
        plans[("build", tokens)] = path
    return plans


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=float, nargs="+", default=[1e9, 1e10, 1e11])
    parser.add_argument(
        "--build-tokens",
        type=float,
        nargs="*",
        default=[1e9],
        help="budgets for a real GPTDataset build over local prefixes (slow beyond 1e10)",
    )
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PLAN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0

    from _results import publish_output  # bench/_results.py (bench/ is on sys.path when run as a script)

    tmp = Path(tempfile.mkdtemp(prefix="bench-blend-"))
    try:
        with publish_output("blend"):
            plans = make_plans(tmp, args.tokens, args.build_tokens)
            print(
                f"{'budget':>7} {'samples':>11} {'method':<44} {'seconds':>8} {'peak MB':>8} "
                f"{'x base s':>8} {'x base MB':>9} {'process s':>9}"
            )
            rows = []
            for tokens in args.tokens:
                base = measure("baseline", plans[("indices", tokens)])
                ours = measure("verify", plans[("indices", tokens)])
                for name, r in (
                    ("megatron build_blending_indices [baseline]", base),
                    ("taskseed blend verify (indices, 5 datasets)", ours),
                ):
                    print(
                        f"{tokens / 1e9:>6.0f}B {r['samples']:>11,} {name:<44} {r['seconds']:>8.2f} "
                        f"{r['peak_mb']:>8.0f} {r['seconds'] / base['seconds']:>8.2f} "
                        f"{r['peak_mb'] / base['peak_mb']:>9.2f} {r['process_seconds']:>9.1f}"
                    )
                rows.append((tokens, ours))
            for tokens in args.build_tokens:
                r = measure("build", plans[("build", tokens)])
                print(
                    f"{tokens / 1e9:>6.0f}B {r['samples']:>11,} {'taskseed verify, real GPTDataset build':<44} "
                    f"{r['seconds']:>8.2f} {r['peak_mb']:>8.0f} {'':>8} {'':>9} {r['process_seconds']:>9.1f}"
                )
            for tokens, ours in rows:
                if tokens >= 1e11:
                    fine = ours["process_seconds"] < 60 and ours["peak_mb"] < 4096
                    print(
                        f"\n100B check (whole process, imports included): {ours['process_seconds']:.1f} s < 60 s and "
                        f"{ours['peak_mb']:.0f} MB < 4096 MB: {'PASS' if fine else 'FAIL'}; shares ok: {ours['ok']}"
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
