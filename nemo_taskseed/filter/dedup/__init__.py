"""CPU dedup (exact normalized-text hash, MinHash+LSH fuzzy) and Curator's GPU workflows."""

from nemo_taskseed.filter.dedup.exact import ExactMatch, exact_key, find_exact_duplicates
from nemo_taskseed.filter.dedup.fuzzy import FuzzyMatch, NearDuplicateIndex, shingles

__all__ = ["ExactMatch", "FuzzyMatch", "NearDuplicateIndex", "exact_key", "find_exact_duplicates", "shingles"]
