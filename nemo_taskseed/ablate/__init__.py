"""Ablations: plan, launch and report a set of continuation runs (docs/training.md)."""
