#!/usr/bin/env python
"""NeMo 2 (nemo_toolkit 2.7, `nemo.collections.llm`) continued pretraining on a taskseed blend.

For teams still on NeMo 2. Needs its own environment (.venv-nemo2, see README (Training)).
Builds `llm.<preset>.pretrain_recipe(...)` with `PreTrainingDataModule(paths=<blend>)`, the same
train_iters, schedule and starting checkpoint as the Bridge recipe, then runs it with NeMo-Run:

    python -m nemo_taskseed.recipes.nemo2_continued_pretraining --spec training_spec.json           # one node: NeMo-Run starts torchrun
    torchrun ... -m nemo_taskseed.recipes.nemo2_continued_pretraining --spec training_spec.json      # per rank (launch/ templates)
    python -m nemo_taskseed.recipes.nemo2_continued_pretraining --spec training_spec.json --dry-run # print, do not run
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--spec", required=True, help="training_spec.json written by `taskseed launch train`")
    parser.add_argument("--dry-run", action="store_true", help="build the recipe, print its key fields, do not run")
    args = parser.parse_args(argv)

    from nemo_taskseed.errors import UserError
    from nemo_taskseed.train.nemo2 import build_nemo2_recipe, nemo2_summary
    from nemo_taskseed.train.spec import TrainingSpec

    spec = TrainingSpec.read(args.spec)
    try:
        recipe = build_nemo2_recipe(spec)
    except UserError as exc:  # not in a NeMo 2 environment: one line, not an import traceback
        print(f"nemo2_continued_pretraining: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(nemo2_summary(recipe), indent=2, default=str))
    if args.dry_run:
        return 0
    import nemo_run as run

    if "LOCAL_RANK" in os.environ:
        # Already one rank of a torchrun/srun launch (launch/ templates): run the recipe in this process.
        run.run(recipe, direct=True)
    else:
        # Started by hand on one node: let NeMo-Run start torchrun over this node's GPUs.
        executor = run.LocalExecutor(ntasks_per_node=spec.gpus_per_node, launcher="torchrun")
        run.run(recipe, executor=executor, name=f"taskseed_{spec.recipe}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
