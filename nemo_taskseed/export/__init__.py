"""`taskseed export`: a finished run's curated records as a Hugging Face dataset folder, with its card
and the license its sources allow (docs/export.md)."""
