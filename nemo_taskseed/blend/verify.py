"""Check a plan against what megatron-core actually samples.

Two checks, both with megatron-core's own code:

* **blending indices** for the full planned sample count (24.4M samples for 100B tokens at 4096):
  `megatron.core.datasets.helpers.build_blending_indices`, called with exactly the weights and
  size `BlendedMegatronDatasetBuilder` would pass to `BlendedDataset`. Cheap (no data is read), so
  it always runs at full scale.
* **a real build**: `BlendedMegatronDatasetBuilder(GPTDataset, ...)` over the planned prefixes with
  the manifest's tokenizer, for min(planned samples, `verify.build_max_samples`) samples; reads
  samples back and counts which dataset each came from. Needs every prefix on this machine.

A sample is `seq_length` tokens from one dataset, so a dataset's realized token share is its
share of samples.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nemo_taskseed.blend.sources import prefix_exists
from nemo_taskseed.schema.plan import PlanError


class VerifyError(PlanError):
    """Realized shares outside the configured tolerance (the message names the datasets)."""


@dataclass
class Tolerance:
    absolute: float = 5e-4
    relative: float = 0.01

    def allowed(self, planned: float, samples: int) -> float:
        # A blend of N samples cannot hit a share finer than 1/N.
        return max(self.absolute, self.relative * planned, 1.0 / max(samples, 1))


def _megatron(module: str):
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Transformer Engine/Apex notices from megatron.core's import
        return importlib.import_module(f"megatron.core.datasets.{module}")


def megatron_blend_sizes(weights: list[float], samples: int) -> tuple[list[float], int]:
    """The (weights, size) `BlendedMegatronDatasetBuilder` hands to `BlendedDataset` for a train
    split of `samples`: weights normalized, size = sum(ceil(samples * w_i)) (a few samples more)."""
    normalize = _megatron("utils").normalize
    weights = normalize(normalize(list(map(float, weights))))  # builder, then BlendedDataset
    size = sum(int(math.ceil(samples * w)) for w in weights)
    return weights, size


def chunked_bincount(index: np.ndarray, n: int, chunk: int = 1 << 22) -> np.ndarray:
    """np.bincount without its int64 copy of the whole int16 index (195 MB more at 24.4M samples)."""
    counts = np.zeros(n, dtype=np.int64)
    for start in range(0, index.size, chunk):
        counts += np.bincount(index[start : start + chunk], minlength=n)
    return counts


def blending_index_counts(weights: list[float], samples: int) -> tuple[np.ndarray, int, float]:
    """Samples per dataset from megatron-core's blending indices; (counts, size, seconds)."""
    helpers = _megatron("helpers")
    weights, size = megatron_blend_sizes(weights, samples)
    started = time.perf_counter()
    dataset_index = np.zeros(size, dtype=np.int16)
    dataset_sample_index = np.zeros(size, dtype=np.int64)
    helpers.build_blending_indices(
        dataset_index, dataset_sample_index, np.asarray(weights, dtype=np.float64), len(weights), size, False
    )
    counts = chunked_bincount(dataset_index, len(weights))
    seconds = time.perf_counter() - started
    del dataset_index, dataset_sample_index
    return counts, size, seconds


def megatron_tokenizer(tokenizer_path: str):
    """megatron-core's own HF tokenizer wrapper (what GPTDataset reads `eod`/`pad` from)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.tokenizers import MegatronTokenizer

    return MegatronTokenizer.from_pretrained(str(tokenizer_path), metadata_path={"library": "huggingface"})


def build_megatron_blend(
    plan: dict, tokenizer_path: str, samples: int, *, seed: int = 1234, cache_dir: Path | None = None
):
    """The train split of the plan as megatron-core builds it: a `BlendedDataset` of `GPTDataset`s."""
    import warnings

    from nemo_taskseed.compat import megatron_single_rank_group

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
        from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    prefixes = [p for _, p in plan["data_paths"]]
    weights = [float(w) for w, _ in plan["data_paths"]]
    own_cache = cache_dir is None
    cache_dir = Path(tempfile.mkdtemp(prefix="taskseed-blend-cache-")) if own_cache else Path(cache_dir)
    teardown = megatron_single_rank_group(cache_dir)
    try:
        config = GPTDatasetConfig(
            random_seed=seed,
            sequence_length=int(plan["seq_length"]),
            blend=(prefixes, weights) if len(prefixes) > 1 else (prefixes, None),
            split="1,0,0",
            path_to_cache=str(cache_dir),
            tokenizer=megatron_tokenizer(tokenizer_path),
            reset_position_ids=False,
            reset_attention_mask=False,
            eod_mask_loss=False,
            mid_level_dataset_surplus=0.005,
        )
        train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [samples, 0, 0], lambda: True, config).build()
        return train
    finally:
        teardown()
        if own_cache:
            shutil.rmtree(cache_dir, ignore_errors=True)


def verify_plan(
    plan: dict,
    tokenizer_path: str | None,
    *,
    tolerance: Tolerance | None = None,
    build_max_samples: int = 20_000,
    read_samples: int = 64,
    seed: int = 1234,
    build: str = "auto",
) -> dict:
    """Realized token share per dataset against the plan; `report["ok"]` is False beyond tolerance.

    build: "always" (a real build; a missing prefix is an error), or "never" (indices only).
    "auto" is the old name of "always".
    """
    tolerance = tolerance or Tolerance()
    entries = plan["entries"]
    weights = [float(w) for w, _ in plan["data_paths"]]
    planned = np.asarray([e["share"] for e in entries], dtype=np.float64)
    total_samples = int(plan["total_samples"])

    counts, size, seconds = blending_index_counts(weights, total_samples)
    realized = counts / size
    rows = []
    for entry, p, r, c in zip(entries, planned, realized, counts):
        allowed = tolerance.allowed(p, size)
        rows.append(
            {
                "name": entry["name"],
                "planned_share": float(p),
                "realized_share": float(r),
                "samples": int(c),
                "realized_tokens": int(c) * int(plan["seq_length"]),
                "diff": float(r - p),
                "allowed": allowed,
                "ok": bool(abs(r - p) <= allowed),
            }
        )
    report = {
        "indices": {"samples": size, "seconds": round(seconds, 3), "rows": rows, "ok": all(r["ok"] for r in rows)},
        "build": None,
    }

    missing = [p for _, p in plan["data_paths"] if not prefix_exists(p)]
    if build not in ("always", "auto", "never"):
        raise PlanError(f"blend.verify.build must be always or never, got {build!r}")
    if build != "never" and missing:
        # A verification that skipped the build must not print OK: say what is missing and how
        # to verify the indices alone on a machine without the data.
        raise PlanError(
            f"cannot build the blend here: {len(missing)} planned prefix(es) do not exist on this "
            f"machine, e.g. {missing[0]}.bin/.idx. Verify the blending indices only with "
            "`--build never` (blend.verify.build=never)"
        )
    if build != "never" and not missing:
        if tokenizer_path is None:
            raise PlanError("a real megatron-core build needs the tokenizer (plan.tokenizer.path)")
        build_samples = min(total_samples, int(build_max_samples))
        started = time.perf_counter()
        dataset = build_megatron_blend(plan, tokenizer_path, build_samples, seed=seed)
        build_seconds = time.perf_counter() - started
        if len(weights) > 1:
            build_counts = chunked_bincount(np.asarray(dataset.dataset_index), len(weights))
        else:
            build_counts = np.asarray([len(dataset)])
        n = int(build_counts.sum())
        checked = _read_samples(dataset, int(plan["seq_length"]), read_samples)
        build_rows = []
        for entry, p, c in zip(entries, planned, build_counts):
            r = c / n
            allowed = tolerance.allowed(p, n)
            build_rows.append(
                {
                    "name": entry["name"],
                    "planned_share": float(p),
                    "realized_share": float(r),
                    "samples": int(c),
                    "diff": float(r - p),
                    "allowed": allowed,
                    "ok": bool(abs(r - p) <= allowed),
                }
            )
        report["build"] = {
            "samples": n,
            "requested_samples": build_samples,
            "seconds": round(build_seconds, 3),
            "samples_read": checked,
            "rows": build_rows,
            "ok": all(r["ok"] for r in build_rows),
        }
    else:
        report["build_skipped"] = "blend.verify.build=never: blending indices checked, the datasets were not built"
    report["ok"] = report["indices"]["ok"] and (report["build"] is None or report["build"]["ok"])
    return report


def _read_samples(dataset, seq_length: int, count: int) -> int:
    """Read `count` evenly spaced samples: each must be a full window of valid token ids."""
    if len(dataset) == 0:
        raise VerifyError("megatron-core built an empty blend")
    picks = np.unique(np.linspace(0, len(dataset) - 1, num=min(count, len(dataset))).astype(int))
    for i in picks:
        sample = dataset[int(i)]
        tokens = np.asarray(sample["tokens"])
        if tokens.shape != (seq_length,):
            raise VerifyError(f"sample {i} has shape {tokens.shape}, expected ({seq_length},)")
    return int(picks.size)


def failures(report: dict) -> list[str]:
    out = []
    for stage in ("indices", "build"):
        part = report.get(stage)
        if not part:
            continue
        for row in part["rows"]:
            if not row["ok"]:
                out.append(
                    f"{stage}: {row['name']} realized {row['realized_share']:.6f} vs planned "
                    f"{row['planned_share']:.6f} (|diff| {abs(row['diff']):.2e} > {row['allowed']:.2e})"
                )
    return out
