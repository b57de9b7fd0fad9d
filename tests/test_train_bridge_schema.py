"""Our Bridge settings against the real megatron-bridge 0.6.2 / megatron-core 0.19.2 sources.

Bridge cannot be imported here (Python 3.12 + CUDA Transformer Engine), so its wheels are read as
zip + ast: every ConfigContainer path we set and every preset's recipe function must exist.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nemo_taskseed.paths import cache_dir
from nemo_taskseed.train.bridge import bridge_settings
from nemo_taskseed.train.bridge_schema import index_wheels, missing_settings, recipe_function_exists
from nemo_taskseed.train.plan import BlendPlan
from nemo_taskseed.train.spec import available_recipes, build_spec, load_train_config

WHEELS = cache_dir("wheels")
DOWNLOAD = (
    "pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 "
    f"megatron-bridge==0.6.2 megatron-core==0.19.2 -d {WHEELS}"
)

pytestmark = pytest.mark.skipif(
    not (list(WHEELS.glob("megatron_bridge-0.6.2-*.whl")) and list(WHEELS.glob("megatron_core-0.19.2-*.whl"))),
    reason=f"Bridge/megatron-core wheels absent (~4.5 MB, read not installed); get them with: {DOWNLOAD}",
)


@pytest.fixture(scope="module")
def index():
    return index_wheels(WHEELS)


@pytest.mark.parametrize("recipe", available_recipes())
def test_every_setting_and_recipe_function_exists_in_bridge(index, recipe):
    plan = BlendPlan(Path("plan.json"), 8192, 10**11, ((0.7, "/d/web"), (0.3, "/d/qa")))
    spec = build_spec(load_train_config(None, [f"train.recipe={recipe}"]), plan=plan)
    settings = bridge_settings(spec)
    assert len(settings) >= 30
    assert missing_settings(settings, index) == []
    assert recipe_function_exists(spec.bridge_recipe, index)


def test_the_check_catches_typos_and_renames(index):
    assert missing_settings(
        {
            "train.train_itres": 1,
            "checkpoint.pretrained_ckpt": "x",
            "datasets.blend": None,
            "train.train_iters": 1,
            "mixed_precision": "bf16_mixed",
        },
        index,
    ) == ["train.train_itres", "checkpoint.pretrained_ckpt", "datasets.blend"]
    assert not recipe_function_exists("megatron.bridge.recipes.llama:llama31_9b_pretrain_config", index)
