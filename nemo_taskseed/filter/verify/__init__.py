"""Answer verification: majority vote (multiple choice, math, short answer) and sandboxed code tests."""

from nemo_taskseed.filter.verify.sandbox import CodeSettings, SandboxResult, run_code_tests
from nemo_taskseed.filter.verify.vote import (
    VoteResult,
    VoteSettings,
    choice_conversation,
    count_votes,
    decide,
    panel_vote,
    vote,
    vote_request,
)

__all__ = [
    "CodeSettings",
    "SandboxResult",
    "VoteResult",
    "VoteSettings",
    "choice_conversation",
    "count_votes",
    "decide",
    "panel_vote",
    "run_code_tests",
    "vote",
    "vote_request",
]
