"""Pipeline assembly: executors for Curator pipelines and the `taskseed run` step sequence."""
