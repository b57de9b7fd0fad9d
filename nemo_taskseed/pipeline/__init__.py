"""Infrastructure every stage shares: Curator executors, shards, output locks, published sets, the reaper.

The step sequence of `taskseed run` sits above the stages, in `nemo_taskseed/run.py`.
"""
