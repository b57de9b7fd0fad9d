"""Stages 3 and 4: similar-question generation and answer enrichment (vLLM in-process or an OpenAI-compatible endpoint).

    backends.py   build_backend(cfg) -> Backend.chat(conversations, n=, temperature=, ...) -> list[list[str]]
    prompts.py    prompt templates (configs/prompts/*.yaml) and their selection per seed
    parsers.py    reply schemas, strict/tolerant parsing, rejection reasons
    render.py     the `text` of each variant (label, answer, reasoning, context)
    cache.py      the SQLite request cache that makes runs resumable
    stages.py     SimilarQuestionStage, AnswerEnrichmentStage (NeMo Curator ProcessingStages)
    step.py       run_step(cfg, in_dir, out_dir): `taskseed generate` and the `generate` step of `taskseed run`

README (Generation) describes config, formats and resume semantics.
"""
