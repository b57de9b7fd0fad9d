"""Stages 3 and 4: similar-question generation and answer enrichment (vLLM in-process or an OpenAI-compatible endpoint)."""
