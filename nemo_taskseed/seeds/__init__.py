"""Stages 1b and 2: collect seed rows from training splits and normalize them into the unified schema."""

from nemo_taskseed.seeds.pipeline import build_seed_pipeline, collect_seeds

__all__ = ["build_seed_pipeline", "collect_seeds"]
