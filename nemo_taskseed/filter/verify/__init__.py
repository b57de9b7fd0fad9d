"""Answer verification: majority vote (multiple choice, math, short answer) and sandboxed code tests."""

from nemo_taskseed.filter.verify.sandbox import SandboxResult, run_code_tests
from nemo_taskseed.filter.verify.vote import (
    VoteResult,
    VoteSettings,
    choice_conversation,
    decide,
    panel_vote,
    vote_generative,
    vote_multiple_choice,
)

__all__ = [
    "SandboxResult",
    "VoteResult",
    "VoteSettings",
    "choice_conversation",
    "decide",
    "panel_vote",
    "run_code_tests",
    "vote_generative",
    "vote_multiple_choice",
]
