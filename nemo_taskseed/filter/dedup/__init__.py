"""Dedup: exact (normalized-text hash) and fuzzy (MinHash + LSH) over every shard on CPU
(`sharded`), and Curator's GPU workflows (`gpu`, `filter.dedup.backend: gpu`)."""

from nemo_taskseed.filter.dedup.sharded import DedupSettings, Drop, resolve, shingles, signatures_for

__all__ = ["DedupSettings", "Drop", "resolve", "shingles", "signatures_for"]
