"""Stages 3 and 4: similar-question generation and answer enrichment (vLLM in-process or an OpenAI-compatible endpoint).

    prompts.py        prompt templates (configs/prompts/*.yaml) and their selection per seed
    parsers.py        reply schemas, strict/tolerant parsing, rejection reasons
    render.py         the `text` of each variant (label, answer, reasoning, context)
    settings.py       `generate.*` and `enrich.*` as typed settings
    questions.py      SimilarQuestions (stage 3): each seed's request, its replies judged, items deduplicated
    enrichment.py     AnswerEnrichment (stage 4): enrichment requests, one record per variant
    batches.py        the rows between stages (Curator DocumentBatches) and a shard as a task
    stages.py         the shard reader and writer, and GenerateAndEnrichStage (NeMo Curator
                      ProcessingStages) running SimilarQuestions and AnswerEnrichment on one engine
    step.py           run_step(cfg, in_dir, out_dir): `taskseed generate` and the `generate` step of `taskseed run`
    fixture_seeds.py  seeds from the test fixtures (tests and benches)

The model client (backends, request cache, streaming requests, cost) is `nemo_taskseed.llm`.
README (Generation) describes config, formats and resume semantics.
"""
