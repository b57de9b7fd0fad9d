"""Build the catalog rows (eligible and excluded subtasks) from lm-eval's task index, with a cache."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from nemo_taskseed.catalog.guard import LEAK_RULES, DatasetKey, ScoredSplits, choose_seed_split
from nemo_taskseed.catalog.verifiers import NOT_QA, verifier_for
from nemo_taskseed.config import ConfigError, resolve_config_path, to_container
from nemo_taskseed.errors import UserError
from nemo_taskseed.paths import cache_dir
from nemo_taskseed.utils.jsonl import atomic_path

# 2: verifier kind per subtask, non-QA excluded; 3: denylist reasons, deny_licenses;
# 4: source keys, canonical tasks and aliases, leak_rule with declared_eval_split;
# 5: capability families (`family`), lm-eval `folder`, one kind per source; 6: `language`;
# 7: `license_source`
CATALOG_VERSION = 7
_SPLIT_ROLES = ("override", "training_split", "fewshot_split")


@dataclass
class CatalogResult:
    eligible: list[dict[str, Any]]
    excluded: list[dict[str, Any]]
    cache_hit: bool
    seconds: float

    def counts(self) -> dict[str, Any]:
        by_role = {role: sum(r["split_role"] == role for r in self.eligible) for role in _SPLIT_ROLES}
        by_kind = {k: sum(r["kind"] == k for r in self.eligible) for k in ("knowledge", "reasoning")}
        by_verifier = dict(sorted(Counter(r.get("verifier", "?") for r in self.eligible).items()))
        by_format = {f: sum(r["format"] == f for r in self.eligible) for f in ("multiple_choice", "generative")}
        canonical = [r for r in self.eligible if r.get("canonical_task", r["task"]) == r["task"]]
        reasons: dict[str, int] = {}
        for r in self.excluded:
            reasons[r["reason_code"]] = reasons.get(r["reason_code"], 0) + 1
        return {
            "eligible_subtasks": len(self.eligible),
            "eligible_families": len({r["family"] for r in self.eligible}),
            # Subtasks that read the same rows (source_key) seed once, under their canonical task.
            "distinct_sources": len(canonical),
            "excluded_subtasks": len(self.excluded),
            "by_split_role": by_role,
            "by_kind": by_kind,
            "by_verifier": by_verifier,
            "by_format": by_format,
            "excluded_by_reason": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        }


def _family(yaml_path: Path, tasks_root: Path) -> str:
    """The top-level folder under lm_eval/tasks (arc, mmlu, super_glue, ...)."""
    try:
        return yaml_path.resolve().relative_to(tasks_root.resolve()).parts[0]
    except ValueError:  # a task from an --include_path outside lm-eval
        return yaml_path.parent.name


def _format_of(output_type: str | None) -> str | None:
    return {"multiple_choice": "multiple_choice", "generate_until": "generative", "loglikelihood": "generative"}.get(
        output_type or ""
    )


class KindRules:
    """knowledge vs reasoning: per-task override, else family list, else the default (see configs/base/catalog.yaml)."""

    def __init__(self, rules: dict[str, Any]):
        self.task_overrides = dict(rules.get("task_overrides") or {})
        self.knowledge = list(rules.get("knowledge_families") or [])
        self.reasoning = list(rules.get("reasoning_families") or [])
        self.default = rules.get("default", "reasoning")

    def __call__(self, task: str, family: str) -> tuple[str, str]:
        if task in self.task_overrides:
            return self.task_overrides[task], "task override"
        for pattern in self.knowledge:
            if fnmatch.fnmatch(family, pattern):
                return "knowledge", f"family matches knowledge pattern {pattern!r}"
        for pattern in self.reasoning:
            if fnmatch.fnmatch(family, pattern):
                return "reasoning", f"family matches reasoning pattern {pattern!r}"
        return self.default, "default"


class CapabilityMap:
    """lm-eval subtask -> capability family and its kind, from the data file catalog.capability_map
    names (configs/capabilities.yaml): fnmatch patterns over "<lm-eval folder>/<task>"."""

    def __init__(self, data: dict[str, Any] | None, where: str = "catalog.capability_map"):
        self.families: list[tuple[str, str, str, list[str]]] = []
        for name, entry in ((data or {}).get("families") or {}).items():
            if not isinstance(entry, dict) or not entry.get("match"):
                raise ConfigError(f"{where}: families.{name} needs `match` (patterns over <folder>/<task>) and `kind`")
            kind = entry.get("kind")
            if kind not in ("knowledge", "reasoning"):
                raise ConfigError(f"{where}: families.{name}.kind must be knowledge or reasoning, got {kind!r}")
            self.families.append((str(name), kind, str(entry.get("why") or ""), [str(p) for p in entry["match"]]))
        self.folder_languages = {str(k): str(v) for k, v in ((data or {}).get("folder_languages") or {}).items()}
        self.language_codes = {str(c) for c in (data or {}).get("language_codes") or []}
        self.variant_suffixes = {str(c) for c in (data or {}).get("variant_suffixes") or []}

    def language(self, folder: str, task: str, dataset_name: str | None) -> str:
        """The data's language: the folder's, else a code ending the task name (before a prompt
        suffix) or naming its dataset config, else English."""
        if folder in self.folder_languages:
            return self.folder_languages[folder]
        tokens = [t for t in task.replace("-", "_").split("_") if not t.startswith(("prompt", "p0", "p1", "p2"))]
        # A language code may be followed by a variant marker (xnli_eu_mt: machine-translated
        # Basque) or a number; those are skipped, not read as the language.
        while len(tokens) > 1 and (tokens[-1].isdigit() or tokens[-1].lower() in self.variant_suffixes):
            tokens.pop()
        for candidate in (tokens[-1] if tokens else None, dataset_name):
            if candidate and candidate.lower() in self.language_codes:
                code = candidate.lower()
                return {"eng": "en", "fra": "fr", "swa": "sw"}.get(code, code)
        return "en"

    @classmethod
    def from_config(cls, spec: str | None) -> tuple[CapabilityMap, dict[str, Any] | None]:
        """(map, its data) for a file name under configs/ or a path; null: every folder its own family."""
        if not spec:
            return cls(None), None
        import yaml

        try:
            path = resolve_config_path(spec)
        except ConfigError:
            raise ConfigError(f"catalog.capability_map: no such file {spec} (looked in configs/ too)") from None
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"catalog.capability_map: {path}: cannot parse ({exc})") from exc
        return cls(data, str(path)), data

    def __call__(self, folder: str, task: str) -> tuple[str, str | None, str]:
        """(family, kind or None, why): the first capability family matching, else the folder."""
        for name, kind, why, patterns in self.families:
            hit = next((p for p in patterns if fnmatch.fnmatch(f"{folder}/{task}", p)), None)
            if hit:
                return name, kind, f"capability family {name!r} ({hit!r}): {why}"
        return folder, None, "lm-eval folder (no capability family in catalog.capability_map matches)"


class LicenseTable:
    """catalog.licenses: `path: license` (the dataset card says so) or `path: {license, source}`."""

    def __init__(self, table: dict[str, Any], compatible: list[str]):
        self.table: dict[str, tuple[str, str]] = {}
        for path, entry in (table or {}).items():
            if isinstance(entry, dict):
                if not entry.get("license") or not entry.get("source"):
                    raise ConfigError(
                        f"catalog.licenses.{path}: give both `license` and `source` (where the claim is from)"
                    )
                self.table[path.lower()] = (str(entry["license"]), str(entry["source"]))
            else:
                said = "gives no license" if str(entry) == "unknown" else "on the Hugging Face hub"
                self.table[path.lower()] = (str(entry), f"dataset card of {path} {said}")
        self.compatible = {c.lower() for c in compatible or []}

    def __call__(self, dataset_path: str) -> str:
        return self.table.get(dataset_path.lower(), ("unknown", ""))[0]

    def source(self, dataset_path: str) -> str | None:
        return self.table.get(dataset_path.lower(), (None, None))[1] or None

    def is_compatible(self, license_id: str) -> bool:
        return license_id.lower() in self.compatible


def source_key(cfg: dict[str, Any], split: str, tasks_root: Path) -> str:
    """What a subtask's seeds are made of: dataset, config, data files, split, and the process_docs
    that selects or rewrites its rows (mmlu_pro's categories and tydiqa's languages share one
    split and differ only there). Prompt templates are not part of it: gsm8k and
    gsm8k_cot_zeroshot, or afrimgsm's five prompts, normalize the same rows to the same seeds."""
    key = DatasetKey.from_task_config(cfg)
    process = cfg.get("process_docs")
    if process is not None:
        process = str(process).replace(str(tasks_root.resolve()) + "/", "").replace(str(tasks_root) + "/", "")
    return json.dumps([key.dataset_path, key.dataset_name, key.data_files, split, process])


_ROLE_RANK = {"training_split": 0, "override": 1, "fewshot_split": 2}


def assign_canonical(eligible: list[dict[str, Any]]) -> None:
    """One canonical task per source_key (the declared training split first, then the shortest
    name, then alphabetical: gsm8k over gsm8k_cot_zeroshot, boolq over boolq-seq2seq); the others
    get `canonical_task` pointing at it and the canonical row lists them as `aliases`."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in eligible:
        groups.setdefault(row["source_key"], []).append(row)
    for rows in groups.values():
        canon = min(rows, key=lambda r: (_ROLE_RANK.get(r["split_role"], 9), len(r["task"]), r["task"]))
        for row in rows:
            row["canonical_task"] = canon["task"]
            row["aliases"] = sorted(r["task"] for r in rows if r is not canon) if row is canon else []
            # The same data has one kind wherever it appears.
            if row["kind"] != canon["kind"]:
                row["kind"], row["kind_reason"] = (
                    canon["kind"],
                    f"same source as {canon['task']} ({canon['kind_reason']})",
                )


def scan_task_index(include_paths: list[str] | None = None) -> tuple[list[tuple[str, Path, dict[str, Any]]], Path]:
    """(task, yaml_path, config with includes merged and functions unresolved) for every YAML task."""
    import lm_eval.tasks

    from nemo_taskseed.utils.lm_eval_yaml import task_manager

    tasks_root = Path(lm_eval.tasks.__file__).parent
    manager = task_manager(tuple(str(p) for p in include_paths or ()))
    out = []
    for name, entry in manager.task_index.items():
        if entry.kind.name in ("TASK", "PY_TASK") and entry.cfg is not None and entry.yaml_path is not None:
            out.append((name, Path(entry.yaml_path), entry.cfg))
    return sorted(out, key=lambda t: t[0]), tasks_root


def _cache_key(catalog_cfg: dict[str, Any]) -> str:
    blob = json.dumps({"v": CATALOG_VERSION, "cfg": catalog_cfg}, sort_keys=True, default=str)
    return f"lm_eval-{version('lm_eval')}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def _license_problem(license_id: str, licenses: LicenseTable, deny_licenses: set[str], catalog_cfg: dict) -> str | None:
    """Why a dataset's license keeps its subtasks from seeding (None: it does not)."""
    if license_id.lower() in deny_licenses:
        return (
            f"license {license_id!r} forbids derivatives (catalog.deny_licenses): synthetic items "
            "made from its rows would be derivatives"
        )
    if catalog_cfg.get("license_compatible_only") and not licenses.is_compatible(license_id):
        return f"license {license_id!r} is not in compatible_licenses"
    return None


def build_catalog(catalog_cfg: Any, *, use_cache: bool = True) -> CatalogResult:
    """Eligible subtasks (one row each) and excluded ones (with a reason), cached per lm-eval version + config."""
    start = time.perf_counter()
    catalog_cfg = to_container(catalog_cfg)
    leak_rule = str(catalog_cfg.get("leak_rule") or "conservative")
    if leak_rule not in LEAK_RULES:
        raise ConfigError(f"catalog.leak_rule must be one of {list(LEAK_RULES)}, got {leak_rule!r}")
    capabilities, capability_data = CapabilityMap.from_config(catalog_cfg.get("capability_map"))
    licenses = LicenseTable(catalog_cfg.get("licenses") or {}, catalog_cfg.get("compatible_licenses") or [])
    # The map's content, not its file name, decides the rows.
    cache_file = cache_dir("catalog") / f"{_cache_key({**catalog_cfg, 'capability_map': capability_data})}.json"
    if use_cache and cache_file.is_file():
        data = json.loads(cache_file.read_text())
        return CatalogResult(data["eligible"], data["excluded"], True, time.perf_counter() - start)

    tasks, tasks_root = scan_task_index(catalog_cfg.get("include_paths"))
    scored = ScoredSplits()
    for name, _, cfg in tasks:
        scored.add_task(name, cfg)

    kind_of = KindRules(catalog_cfg.get("kind") or {})
    overrides = dict(catalog_cfg.get("split_overrides") or {})
    # Entries are {pattern, reason} or bare patterns.
    denylist = [
        (str(d["pattern"]), str(d.get("reason") or "")) if isinstance(d, dict) else (str(d), "")
        for d in catalog_cfg.get("denylist") or []
    ]
    deny_licenses = {str(x).lower() for x in catalog_cfg.get("deny_licenses") or []}
    eligible, excluded = [], []
    for name, yaml_path, cfg in tasks:
        folder = _family(yaml_path, tasks_root)
        family, capability_kind, family_reason = capabilities(folder, name)
        base = {"family": family, "folder": folder, "task": name, "yaml_path": str(yaml_path)}

        def exclude(code: str, reason: str, base: dict = base) -> None:
            excluded.append({**base, "reason_code": code, "reason": reason})

        denied = next(
            ((p, why) for p, why in denylist if any(fnmatch.fnmatch(x, p) for x in (name, folder, family))), None
        )
        if denied:
            exclude("denylist", f"matches denylist pattern {denied[0]!r}" + (f": {denied[1]}" if denied[1] else ""))
            continue
        if "class" in cfg:
            exclude("python_task", "Python-class task: no declarative templates to normalize with")
            continue
        if not cfg.get("dataset_path"):
            exclude("no_dataset", "no dataset_path (custom dataset loader)")
            continue
        output_type = cfg.get("output_type") or "generate_until"
        fmt = _format_of(output_type)
        if fmt is None:
            exclude("no_qa", f"output_type {output_type!r} has no question/answer (perplexity task)")
            continue
        if cfg.get("doc_to_image") or cfg.get("doc_to_audio"):
            exclude("multimodal", "multimodal task (doc_to_image/doc_to_audio)")
            continue
        seed = choose_seed_split(name, cfg, scored, overrides, leak_rule)
        if seed.split is None:
            exclude(seed.code, seed.reason)
            continue
        key = DatasetKey.from_task_config(cfg)
        license_id = licenses(key.dataset_path)
        license_problem = _license_problem(license_id, licenses, deny_licenses, catalog_cfg)
        if license_problem:
            exclude("license", license_problem)
            continue
        # After the split and license checks, so `not_qa` counts subtasks that would otherwise seed.
        verifier, verifier_reason = verifier_for(name, folder, cfg, fmt)
        if verifier == NOT_QA:
            exclude("not_qa", f"{verifier_reason}: no answer to check a generated item against")
            continue
        if capability_kind and name not in kind_of.task_overrides:
            kind, kind_reason = capability_kind, f"capability family {family!r} is {capability_kind}"
        else:
            kind, kind_reason = kind_of(name, folder)
        eligible.append(
            {
                **base,
                "dataset_path": key.dataset_path,
                "dataset_name": key.dataset_name,
                "data_files": json.loads(key.data_files) if key.data_files else None,
                "split": seed.split,
                "split_role": seed.role,
                "split_reason": seed.reason,
                "output_type": output_type,
                "format": fmt,
                "kind": kind,
                "kind_reason": kind_reason,
                "family_reason": family_reason,
                "language": capabilities.language(folder, name, key.dataset_name),
                "verifier": verifier,
                "verifier_reason": verifier_reason,
                "license": license_id,
                "license_source": licenses.source(key.dataset_path),
                "source_key": source_key(cfg, seed.split, tasks_root),
            }
        )
    assign_canonical(eligible)
    with atomic_path(cache_file) as tmp:  # a temp name per process: two scans may finish together
        Path(tmp).write_text(json.dumps({"eligible": eligible, "excluded": excluded}))
    return CatalogResult(eligible, excluded, False, time.perf_counter() - start)


def load_catalog_rows(catalog_cfg: Any, tasks: list[str], *, dedup_sources: bool = True) -> list[dict[str, Any]]:
    """Catalog rows for `tasks` (names, or family names, or fnmatch patterns); unknown names suggest near matches.

    With `dedup_sources`, subtasks that read the same source (catalog `source_key`) come back as
    their canonical task's row, once, with the names asked for in `requested_as`: the same rows
    seed once instead of once per prompt variant.
    """
    import difflib

    result = build_catalog(catalog_cfg)
    by_task = {r["task"]: r for r in result.eligible}
    excluded = {r["task"]: r for r in result.excluded}
    rows, missing = [], []
    for name in tasks:
        if name in by_task:
            rows.append(by_task[name])
            continue
        if name in excluded:
            raise UserError(f"task {name!r} is not eligible to seed: {excluded[name]['reason']}")
        matched = [
            r for r in result.eligible if name in (r["family"], r.get("folder")) or fnmatch.fnmatch(r["task"], name)
        ]
        if matched:
            rows.extend(matched)
        else:
            missing.append(name)
    if missing:
        known = list(by_task) + sorted(
            {r["family"] for r in result.eligible} | {r.get("folder", "") for r in result.eligible}
        )
        hints = []
        for name in missing:
            close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
            hints.append(f"{name!r}" + (f" (did you mean: {', '.join(close)}?)" if close else ""))
        raise UserError(f"unknown task(s): {'; '.join(hints)}. List eligible tasks with `taskseed catalog`.")
    unique: dict[str, dict[str, Any]] = {}
    for r in rows:
        target = by_task.get(r.get("canonical_task", r["task"]), r) if dedup_sources else r
        entry = unique.setdefault(target["task"], {**target, "requested_as": []})
        if r["task"] not in entry["requested_as"]:
            entry["requested_as"].append(r["task"])
    return list(unique.values())
