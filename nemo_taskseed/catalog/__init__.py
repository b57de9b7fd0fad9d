"""Stage 1a: the seed catalog — which lm-eval subtasks may seed, from which split, and why.

Built from the installed lm-eval-harness task index (YAML only: no task code is imported, since
some task modules download data or exit the process on import).
"""

from nemo_taskseed.catalog.build import CatalogResult, build_catalog, load_catalog_rows
from nemo_taskseed.catalog.guard import DatasetKey, ScoredSplits, choose_seed_split

__all__ = ["CatalogResult", "DatasetKey", "ScoredSplits", "build_catalog", "choose_seed_split", "load_catalog_rows"]
