"""Stages 1b and 2: collect seed rows from training splits and normalize them into the unified schema."""

from nemo_taskseed.seeds.step import build_seed_stages, collect_seeds

__all__ = ["build_seed_stages", "collect_seeds"]
