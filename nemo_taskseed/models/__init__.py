"""Local models: the offline SmolLM2-135M-Instruct used wherever tests and the demo need a real LLM."""

from nemo_taskseed.models.prepare import DEFAULT_MODEL, prepare_model

__all__ = ["DEFAULT_MODEL", "prepare_model"]
