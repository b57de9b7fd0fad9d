"""The filter's resolve phase: the decisions made once over every shard, between the two per-shard passes.

Reads what the screen pass left in `<work>` (seed markers with their contaminated seeds, dedup
signatures, item embeddings, the frames) and writes one `<work>/drops/<shard>.jsonl` per generated
shard: exact and fuzzy duplicates (cpu: `dedup.sharded.resolve`; gpu: Curator's workflows),
semantic duplicates (`semantic/dedup.py`), and the children of contaminated seeds. Memory is
bounded by one shard or one bucket, never the run. Also measures diversity on what is left.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nemo_taskseed.filter.dedup.sharded import id_of, key_of, resolve
from nemo_taskseed.filter.settings import FilterSettings
from nemo_taskseed.pipeline import shards
from nemo_taskseed.utils.jsonl import iter_jsonl, write_jsonl


@dataclass
class Resolved:
    contaminated: list[dict[str, Any]] = field(default_factory=list)  # contaminated seeds
    seeds_per_family: dict[str, int] = field(default_factory=dict)
    diversity: dict[str, Any] = field(default_factory=dict)  # per family


def resolve_drops(settings: FilterSettings, gen: list, seeds: list, work: Path, out_dir: Path) -> Resolved:
    """Contaminated seeds and dedup decisions -> `work/drops/<shard>.jsonl`."""
    dc = settings.raw["decontam"]
    seed_markers = shards.read_markers(work, [s for s, _ in seeds])
    contaminated = [h for m in seed_markers.values() if m for h in m.get("contaminated_seeds", [])]
    per_family: dict[str, int] = {}
    for m in seed_markers.values():
        shards.add_counts(per_family, (m or {}).get("seeds_per_family", {}))
    dirty = (
        {h["seed_id"]: h for h in contaminated} if dc["enabled"] and dc["drop_children_of_contaminated_seeds"] else {}
    )

    drops: dict[str, dict[str, dict]] = {s: {} for s, _ in gen}
    if settings.cpu_dedup:
        names = [s for s, _ in seeds] + [s for s, _ in gen]
        decided = resolve(
            [work / "dedup" / n for n in names], settings.dedup, excluded_seed_keys={key_of(s) for s in dirty}
        )
        for position, items in decided.items():
            for key, drop in items.items():
                drops[names[position]][id_of(key)] = {"stage": drop.stage, "reason": drop.reason, "detail": drop.detail}
    elif settings.raw["dedup"]["backend"] == "gpu":
        _gpu_dedup(settings.raw, gen, seeds, work, out_dir, drops)
    diversity: dict[str, Any] = {}
    if settings.needs_embeddings:
        diversity = _semantic_resolve(settings, gen, seeds, work, drops, dirty)
    if dirty:  # children of contaminated seeds, decided here so dedup never keeps one of them
        for shard, _ in gen:
            frame = pd.read_parquet(work / "frames" / f"{shard}.parquet", columns=["item_id", "seed_id", "status"])
            for item_id, seed_id in zip(frame["item_id"], frame["seed_id"]):
                if seed_id in dirty and item_id not in drops[shard]:
                    hit = dirty[seed_id]
                    drops[shard][item_id] = {
                        "stage": "decontam",
                        "reason": "seed_contaminated",
                        "detail": {k: hit[k] for k in ("seed_id", "benchmark", "split", "row", "ngram")},
                    }
    for shard, items in drops.items():
        write_jsonl(
            work / "drops" / f"{shard}.jsonl", ({"item_id": k, **v} for k, v in sorted(items.items())), sort_keys=True
        )
    return Resolved(contaminated, per_family, diversity)


def _semantic_resolve(
    settings: FilterSettings,
    gen: list,
    seeds: list,
    work: Path,
    drops: dict[str, dict[str, dict]],
    dirty: dict[str, Any],
) -> dict[str, Any]:
    """Semantic dedup over every shard's saved item embeddings (items not already dropped, nor
    children of contaminated seeds), then the diversity metrics of what is left. Both read the
    per-shard files one shard at a time (filter/semantic/dedup.py, diversity.py): memory does not
    grow with the run."""
    from nemo_taskseed.filter.semantic.dedup import semantic_duplicates_sharded
    from nemo_taskseed.filter.semantic.diversity import diversity_from_shards

    names = [shard for shard, _ in gen]
    item_prefixes = [work / "semantic" / shard for shard in names]
    seed_prefixes = [work / "semantic" / shard for shard, _ in seeds]
    sem = settings.semantic_dedup
    if sem is not None:
        for d in semantic_duplicates_sharded(
            item_prefixes,
            seed_prefixes,
            sem,
            work / "semantic_buckets",
            excluded_items={k: set(drops[shard]) for k, shard in enumerate(names)},
            excluded_seeds=set(dirty),
        ):
            drops[names[d.part]][d.item_id] = {"stage": "semantic_dedup", "reason": d.reason, "detail": d.detail}
    div = settings.raw.get("diversity") or {}
    if not div.get("enabled"):
        return {}
    return diversity_from_shards(
        item_prefixes,
        seed_prefixes,
        excluded_items=[set(drops[shard]) for shard in names],
        excluded_seeds=set(dirty),
        max_items_per_family=int(div.get("max_items_per_family") or 5000),
    )


def _gpu_dedup(
    fcfg: dict, gen: list, seeds: list, work: Path, out_dir: Path, drops: dict[str, dict[str, dict]]
) -> None:
    """filter.dedup.backend=gpu: Curator's cudf workflows mark duplicates over the kept items of
    every shard and the seeds (input written from the phase-1 frames); we reject them with a reason."""
    from nemo_taskseed.filter.dedup import gpu
    from nemo_taskseed.filter.records import kept_items

    cfg = fcfg["dedup"]
    cache = Path(cfg["gpu"].get("cache_path") or out_dir / ".dedup_cache")
    items: list[tuple[str, dict]] = []
    owner: dict[str, str] = {}
    for _, path in seeds:
        items.extend((f"seed:{obj.get('id')}", obj) for _, obj, err in iter_jsonl(path) if err is None)
    for shard, _ in gen:
        df = pd.read_parquet(work / "frames" / f"{shard}.parquet")
        reps, _ = kept_items(df)
        for i in reps:
            owner[df.at[i, "item_id"]] = shard
            items.append((df.at[i, "item_id"], json.loads(df.at[i, "record"])))
    src = gpu.write_dedup_input(cache / "input", items, list(cfg["fields"]))
    for kind, wf in (
        ("exact", gpu.exact_workflow(src.parent, cache / "exact")),
        ("fuzzy", gpu.fuzzy_workflow(src.parent, cache / "fuzzy", cache / "fuzzy_cache", cfg["gpu"])),
    ):
        wf.run()
        for item_id in gpu.removal_ids(cache / kind):
            if item_id in owner and item_id not in drops[owner[item_id]]:
                drops[owner[item_id]][item_id] = {
                    "stage": f"{kind}_dedup",
                    "reason": f"gpu_{kind}_duplicate",
                    "detail": {},
                }
