#!/usr/bin/env python
"""Megatron-Bridge continued pretraining on a taskseed blend.

Launched per rank by torchrun/srun (see nemo_taskseed/launch/templates): builds the Bridge recipe named by the spec's
preset (e.g. `llama31_8b_pretrain_config`), applies our settings (blend from plan.json,
train_iters from the token budget, continuation LR schedule, pretrained checkpoint, intervals),
then any Hydra-style overrides given after the options, exactly like Bridge's own recipe scripts:

    torchrun --nproc-per-node 8 -m nemo_taskseed.recipes.bridge_continued_pretraining --spec training_spec.json \
        model.recompute_granularity=full train.manual_gc_interval=50

`--dry-run` prints the settings without importing Megatron-Bridge (which needs Python 3.12 and a
CUDA Transformer Engine build, so it cannot be imported on a CPU-only machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--spec", required=True, help="training_spec.json written by `taskseed launch train`")
    parser.add_argument("--dry-run", action="store_true", help="print the Bridge settings and exit")
    parser.add_argument("--no-eval-hook", action="store_true", help="do not register the on_checkpoint_save eval hook")
    parser.add_argument("overrides", nargs="*", help="Hydra-style Bridge overrides, e.g. train.train_iters=10")
    args = parser.parse_args(argv)

    from nemo_taskseed.train.bridge import bridge_settings, build_config_container
    from nemo_taskseed.train.spec import TrainingSpec

    spec = TrainingSpec.read(args.spec)
    spec.extra_overrides = list(spec.extra_overrides) + list(args.overrides)
    if args.dry_run:
        print(
            json.dumps(
                {
                    "bridge_recipe": spec.bridge_recipe,
                    "settings": bridge_settings(spec),
                    "extra_overrides": spec.extra_overrides,
                },
                indent=2,
            )
        )
        return 0

    from megatron.bridge.training.gpt_step import forward_step
    from megatron.bridge.training.pretrain import pretrain

    cfg = build_config_container(spec)
    callbacks = []
    if not args.no_eval_hook:
        from nemo_taskseed.evaluate.bridge_callback import make_bridge_eval_callback

        callbacks.append(make_bridge_eval_callback(spec.checkpoint_dir, os.environ.get("TASKSEED_EVAL_SUBMIT")))
    pretrain(cfg, forward_step, callbacks=callbacks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
