"""Decontamination: word n-gram overlap of records and seeds with scored benchmark splits."""

from nemo_taskseed.filter.decontam.benchmarks import Benchmark, ScoredSplit, load_split_rows, scored_splits
from nemo_taskseed.filter.decontam.build import BenchmarkCoverage, build_index
from nemo_taskseed.filter.decontam.ngrams import BenchmarkRow, NgramHit, NgramIndex

__all__ = [
    "Benchmark",
    "BenchmarkCoverage",
    "BenchmarkRow",
    "NgramHit",
    "NgramIndex",
    "ScoredSplit",
    "build_index",
    "load_split_rows",
    "scored_splits",
]
