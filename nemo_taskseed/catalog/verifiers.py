"""Which answer check each eligible subtask's generated items get, derived by rule from its lm-eval config.

The filter checks a generated item the way its benchmark scores answers: multiple choice by the
label, math by the final number, code by running the tests, short answers by normalized match.
Which of those a subtask needs is in its lm-eval YAML already; reading it there (instead of a
hand-kept family list) gives every one of the ~700 subtasks a kind, says why, and never falls
back silently:

  multiple_choice  output_type multiple_choice
  code             a pass@k metric, or the code families (humaneval, mbpp, ...)
  not_qa           a translation / summarization / generation metric (bleu, chrf, ter, rouge,
                   comet, perplexity, ...): not question answering, no answer to check; the
                   catalog excludes these subtasks from seeding (reason `not_qa`)
  math             a `\\boxed{}` answer, a numeric `regex` answer filter (lm-eval's
                   "#### (\\-?[0-9\\.\\,]+)", "The answer is (\\-?[0-9\\.\\,]+)", ...), or a math name
                   (gsm, mgsm, afrimgsm, math, arithmetic, asdiv, svamp, aime, ...)
  not_qa           (after the math rules) a name that says so: translation, wmt, flores, iwslt,
                   xsum, code2text, jsonschema, diacritics, transliteration, ...
  short_answer     everything else that is generated and scored by match (exact_match, f1, ...)

The reason is recorded on the catalog row (`verifier_reason`) and `taskseed catalog` counts the
subtasks per kind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

NOT_QA = "not_qa"

_NOT_QA_METRICS = ("bleu", "chrf", "ter", "rouge", "comet", "bertscore", "meteor", "sari", "bleurt", "perplexity")
# Name tokens that mean "not question answering" (whole `_`-separated tokens of the task, family
# or tags; "salient_translation_error_detection" is a question about translations, not one).
_NOT_QA_NAME = re.compile(
    r"(?:^|[_\s-])(?:translation(?!_error)|translate|wmt\d*|flores\w*|iwslt\w*|ntrex|xsum|summari[sz]ation"
    r"|code2text|jsonschema\w*|diacritics?|transliteration)(?=$|[_\s-])",
    re.IGNORECASE,
)
_CODE_FAMILIES = ("humaneval", "mbpp", "mbpp_plus", "humaneval_plus", "ds1000", "apps", "codecontests", "livecodebench")
_MATH_NAME = re.compile(
    r"(?:^|_)(?:gsm|mgsm|afrimgsm|math|minerva|hendrycks_math|arithmetic|asdiv|svamp|aime|aqua|mathqa|multiarith"
    r"|addsub|singleeq|mawps|tabmwp|gsm_plus|gsm8k)",
    re.IGNORECASE,
)
# A regex answer filter that extracts a number: "-?[0-9.,]+", "\d+", "[$0-9.,]"...
_NUMERIC_PATTERN = re.compile(r"\[[^\]]*0-9[^\]]*\]|\\d|####")


def _metric_names(cfg: Mapping[str, Any]) -> list[str]:
    names = []
    for entry in cfg.get("metric_list") or []:
        if isinstance(entry, Mapping) and entry.get("metric") is not None:
            names.append(str(entry["metric"]).lower())
        elif isinstance(entry, str):
            names.append(entry.lower())
    return names


def _regex_patterns(cfg: Mapping[str, Any]) -> list[str]:
    patterns = []
    for pipeline in cfg.get("filter_list") or []:
        for step in (pipeline.get("filter") or []) if isinstance(pipeline, Mapping) else []:
            if isinstance(step, Mapping) and step.get("regex_pattern"):
                patterns.append(str(step["regex_pattern"]))
    return patterns


def verifier_for(task: str, family: str, cfg: Mapping[str, Any], fmt: str) -> tuple[str, str]:
    """(kind, why) for one subtask: a kind of VERIFIER_KINDS, or NOT_QA."""
    if fmt == "multiple_choice":
        return "multiple_choice", "output_type multiple_choice: the label is checked"
    metrics = _metric_names(cfg)
    names = f"{task} {family} {' '.join(str(t) for t in (cfg.get('tag') or []) if isinstance(cfg.get('tag'), list))}"
    if any("pass@" in m or "pass_at" in m or m == "code_eval" for m in metrics):
        return "code", f"pass@k metric ({', '.join(metrics)}): the program runs against the tests"
    if family in _CODE_FAMILIES or task in _CODE_FAMILIES:
        return "code", f"code family {family!r}: the program runs against the tests"
    not_qa_metric = next((m for m in metrics if any(m.startswith(x) or m == x for x in _NOT_QA_METRICS)), None)
    if not_qa_metric:
        return NOT_QA, f"scored by {not_qa_metric} (text generation, not question answering)"
    # Math before the name rule: afrimgsm's "translate" prompts are math problems in translation.
    text = json.dumps({k: cfg.get(k) for k in ("doc_to_target", "filter_list", "process_results")}, default=str)
    if "boxed" in text:
        return "math", "answers are \\boxed{}: final answer compared as a number/expression"
    numeric = next((p for p in _regex_patterns(cfg) if _NUMERIC_PATTERN.search(p)), None)
    if numeric:
        return "math", f"numeric answer filter {numeric!r}: final number compared"
    math_name = _MATH_NAME.search(f"{task} {family}")
    if math_name:
        return "math", f"math task ({math_name.group(0).strip('_')!r} in its name): final number compared"
    name_hit = _NOT_QA_NAME.search(names)
    if name_hit:
        return NOT_QA, f"name says {name_hit.group(0).strip('_ -')!r} (not question answering)"
    return "short_answer", f"generated answer scored by {', '.join(metrics) or 'match'}: normalized exact match"
