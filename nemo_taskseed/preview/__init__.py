"""`taskseed preview`: a few seeds through the real generate and filter steps, shown seed by seed
(seed -> new items -> enrichment -> each filter check's verdict) on the terminal and in
`preview.md`, so prompts can be iterated on in minutes instead of whole runs.

    runner.py   picks the seeds, runs the seeds, generate and filter steps in one folder
    view.py     joins the steps' output files into the per-seed view
    render.py   the terminal view and the markdown file
"""

from nemo_taskseed.preview.runner import Preview, PreviewRun, preview, run_preview, spread
from nemo_taskseed.preview.view import PreviewView, build_view, check_verdicts

__all__ = ["Preview", "PreviewRun", "PreviewView", "build_view", "check_verdicts", "preview", "run_preview", "spread"]
