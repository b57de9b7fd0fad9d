"""nemo_taskseed: task-seeded synthetic Q&A for late-stage LLM pretraining."""

__version__ = "0.1.0"
