"""Continued-pretraining entry points run on the training nodes: `python -m nemo_taskseed.recipes.<name>`
(under torchrun `-m`), from the installed package."""
