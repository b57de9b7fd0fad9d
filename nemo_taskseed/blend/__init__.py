"""Plan a token-budget blend of synthetic prefixes with an existing pretraining blend, emit the
Megatron / Megatron-Bridge / NeMo 2 data arguments, and verify it with megatron-core."""

from nemo_taskseed.blend.plan import plan_blend
from nemo_taskseed.blend.planner import plan_from_config, read_plan, verify_from_config, write_plan
from nemo_taskseed.blend.settings import PlanSettings
from nemo_taskseed.blend.verify import VerifyError, verify_plan
from nemo_taskseed.schema.plan import PlanError

__all__ = [
    "PlanError",
    "PlanSettings",
    "VerifyError",
    "plan_blend",
    "plan_from_config",
    "read_plan",
    "verify_from_config",
    "verify_plan",
    "write_plan",
]
