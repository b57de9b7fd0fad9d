"""Per-shard item embeddings saved by the semantic stage (`<work>/semantic/<shard>.npy/.json`) and
read once by the driver for semantic dedup and the diversity metrics, so no item is embedded twice."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nemo_taskseed.utils.jsonl import atomic_path


@dataclass
class Embedded:
    ids: list[str] = field(default_factory=list)  # item ids (seeds: seed ids)
    seed_ids: list[str] = field(default_factory=list)
    families: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    def save(self, prefix: Path) -> None:
        with atomic_path(Path(f"{prefix}.npy")) as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(self.vectors, dtype=np.float32))
        meta = {"ids": self.ids, "seed_ids": self.seed_ids, "families": self.families, "texts": self.texts}
        with atomic_path(Path(f"{prefix}.json")) as tmp:
            Path(tmp).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, prefix: Path) -> Embedded:
        meta = json.loads(Path(f"{prefix}.json").read_text(encoding="utf-8"))
        return cls(meta["ids"], meta["seed_ids"], meta["families"], meta["texts"], np.load(f"{prefix}.npy"))

    @classmethod
    def concat(cls, parts: list[Embedded]) -> Embedded:
        parts = [p for p in parts if p.ids]
        if not parts:
            return cls()
        return cls(
            [i for p in parts for i in p.ids],
            [s for p in parts for s in p.seed_ids],
            [f for p in parts for f in p.families],
            [t for p in parts for t in p.texts],
            np.concatenate([p.vectors for p in parts]),
        )

    def select(self, keep: list[int]) -> Embedded:
        return Embedded(
            [self.ids[i] for i in keep],
            [self.seed_ids[i] for i in keep],
            [self.families[i] for i in keep],
            [self.texts[i] for i in keep],
            self.vectors[keep] if len(keep) else self.vectors[:0],
        )

    def sorted_by_id(self) -> Embedded:
        """Items in id order: what is decided from them never depends on shard or file order."""
        order = sorted(range(len(self.ids)), key=self.ids.__getitem__)
        return self.select(order)
