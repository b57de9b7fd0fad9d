"""Volume targets: how many seeds each subtask gives, from `seeds.targets` and the splits' sizes.

The paper seeds ~3M knowledge-intensive and ~1.5M reasoning-intensive items and mixes so that large
families do not dominate. `seeds.targets` says how many per kind (and, optionally, per capability
family); the allocation is max-min fair at two levels:

  kind target  -> families: each family gets an equal share, capped at what it has (or its own
                  `targets.families.<name>`); what a small family cannot take goes to the others;
  family share -> subtasks: the same, over the family's subtasks, each capped at
                  `seeds.max_per_subtask` and lifted to `targets.min_per_subtask` where it has rows.

Training splits (and overrides) are allocated first; few-shot/dev splits (split_role
`fewshot_split`, ~5 rows each) only take what the training splits of that kind cannot give.
With no targets (the default) every subtask gets `max_per_subtask`, as before.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from nemo_taskseed.config import ConfigError

KINDS = ("knowledge", "reasoning")


def fair_share(available: list[int], budget: int) -> list[int]:
    """Integers x_i <= available_i summing to min(budget, sum(available)), as equal as the caps allow
    (water filling: the smallest take all they have, the rest split what is left)."""
    out = [0] * len(available)
    left = max(int(budget), 0)
    order = sorted(range(len(available)), key=lambda i: available[i])
    for pos, i in enumerate(order):
        remaining = len(order) - pos
        share = left // remaining + (1 if left % remaining else 0)
        out[i] = min(available[i], share)
        left -= out[i]
    return out


@dataclass
class Targets:
    per_kind: dict[str, int | None] = field(default_factory=dict)
    per_family: dict[str, int] = field(default_factory=dict)
    min_per_subtask: int = 0

    @property
    def active(self) -> bool:
        return any(v is not None for v in self.per_kind.values()) or bool(self.per_family)

    @classmethod
    def from_config(cls, seeds_cfg: dict[str, Any]) -> Targets:
        raw = dict(seeds_cfg.get("targets") or {})

        def count(key: str, value: Any) -> int | None:
            if value is None:
                return None
            try:
                number = int(float(value))
            except (TypeError, ValueError):
                raise ConfigError(f"seeds.targets.{key}: expected a number of seeds, got {value!r}") from None
            if number < 0:
                raise ConfigError(f"seeds.targets.{key}: must be >= 0, got {number}")
            return number

        return cls(
            per_kind={k: count(k, raw.get(k)) for k in KINDS},
            per_family={str(f): count(f"families.{f}", v) for f, v in (raw.get("families") or {}).items()},
            min_per_subtask=count("min_per_subtask", raw.get("min_per_subtask")) or 0,
        )


def _is_training(row: dict[str, Any]) -> bool:
    return row.get("split_role") != "fewshot_split"


def allocate(
    rows: list[dict[str, Any]], sizes: dict[str, int | None], targets: Targets, max_per_subtask: int | None
) -> dict[str, Any]:
    """Seeds per subtask. `sizes`: rows in each subtask's split (None: unknown, taken as the cap).

    Returns {"per_task": {task: quota}, "kinds": {...}, "families": {...}, "notes": [...]}.
    """
    cap = max_per_subtask if max_per_subtask and max_per_subtask > 0 else None
    notes: list[str] = []
    if not targets.active:
        return {"per_task": {r["task"]: cap for r in rows}, "kinds": {}, "families": {}, "notes": notes}
    quotas = _Quotas(_available(rows, sizes, cap, notes), {r["task"]: 0 for r in rows}, targets.min_per_subtask)
    kinds_report: dict[str, dict[str, Any]] = {}
    families_report: dict[str, dict[str, Any]] = {}

    by_kind: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_kind[r["kind"]][r["family"]].append(r)
    for kind, families in sorted(by_kind.items()):
        target = targets.per_kind.get(kind)
        given = _allocate_kind(quotas, kind, families, target, targets.per_family, families_report, notes)
        per_task = quotas.per_task
        for family, rs in families.items():
            report = families_report.setdefault(family, {"kind": kind, "target": None})
            report["seeds"] = sum(per_task[r["task"]] for r in rs)
            report["subtasks"] = len(rs)
            report["from_fewshot"] = sum(per_task[r["task"]] for r in rs if not _is_training(r))
        kinds_report[kind] = {
            "target": target,
            "seeds": given,
            "from_fewshot": sum(per_task[r["task"]] for fam in families.values() for r in fam if not _is_training(r)),
        }
    return {"per_task": quotas.per_task, "kinds": kinds_report, "families": families_report, "notes": notes}


def _available(
    rows: list[dict[str, Any]], sizes: dict[str, int | None], cap: int | None, notes: list[str]
) -> dict[str, int]:
    """Seeds each subtask can give: its split's size (the cap when unknown), at most the cap."""
    unknown: list[str] = []

    def available(row: dict[str, Any]) -> int:
        size = sizes.get(row["task"])
        if size is None:
            if cap is None:
                raise ConfigError(
                    f"seeds.targets: the size of {row['task']}'s split is unknown (no mirror) and "
                    f"seeds.max_per_subtask is null: set a mirror or a cap"
                )
            unknown.append(row["task"])
            size = cap
        return min(size, cap) if cap is not None else size

    avail = {r["task"]: available(r) for r in rows}
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
        notes.append(
            f"split size unknown for {len(unknown)} subtask(s) ({shown}): assumed {cap} "
            f"(seeds.max_per_subtask); give a mirror for real sizes (few-shot/dev splits hold ~5 rows)"
        )
    return avail


@dataclass
class _Quotas:
    """Seeds given so far per subtask (`per_task`), within what each can give (`avail`)."""

    avail: dict[str, int]
    per_task: dict[str, int]
    min_per_subtask: int

    def room(self, row: dict[str, Any]) -> int:
        return self.avail[row["task"]] - self.per_task[row["task"]]

    def fill_family(self, family_rows: list[dict[str, Any]], budget: int) -> int:
        """Split `budget` over a family's subtasks (min_per_subtask first): what was given."""
        room = [self.room(r) for r in family_rows]
        floor = [min(self.min_per_subtask, x) for x in room]
        floor_total = sum(floor)
        if floor_total > budget:  # not even the floors fit: fair share of the budget instead
            floor, floor_total = fair_share(room, budget), budget
        rest = fair_share([x - f for x, f in zip(room, floor)], budget - floor_total)
        for r, f, x in zip(family_rows, floor, rest):
            self.per_task[r["task"]] += f + x
        return floor_total + sum(rest)


def _allocate_kind(
    quotas: _Quotas,
    kind: str,
    families: dict[str, list[dict[str, Any]]],
    target: int | None,
    per_family: dict[str, int],
    families_report: dict[str, dict[str, Any]],
    notes: list[str],
) -> int:
    """Give one kind's seeds to its families' subtasks: what was given in all."""
    given = 0
    # Families with their own target take it first (from training splits, then few-shot ones).
    fixed = {f: n for f, n in per_family.items() if f in families and n is not None}
    for family, want in fixed.items():
        got = quotas.fill_family([r for r in families[family] if _is_training(r)], want)
        got += quotas.fill_family([r for r in families[family] if not _is_training(r)], want - got)
        given += got
        families_report[family] = {"kind": kind, "target": want, "seeds": got}
    free = {f: rs for f, rs in families.items() if f not in fixed}
    if target is None:
        # No target for this kind: its free families keep max_per_subtask per subtask.
        for rs in free.values():
            for r in rs:
                quotas.per_task[r["task"]] = quotas.avail[r["task"]]
                given += quotas.avail[r["task"]]
        return given
    budget = max(target - given, 0)
    for stage in (_is_training, lambda r: not _is_training(r)):
        names = sorted(free)
        room = [sum(quotas.room(r) for r in free[f] if stage(r)) for f in names]
        for family, share in zip(names, fair_share(room, budget)):
            got = quotas.fill_family([r for r in free[family] if stage(r)], share)
            budget -= got
            given += got
    if given < target:
        notes.append(
            f"{kind}: {given:,} seeds available of the {target:,} targeted "
            f"(training and few-shot splits of the selected subtasks are exhausted)"
        )
    return given


def split_sizes(rows: list[dict[str, Any]], mirror: str | None) -> dict[str, int | None]:
    """Rows per subtask's split: counted in the mirror (JSONL lines / Parquet metadata), else unknown."""
    from nemo_taskseed.seeds.source import SourceError, mirror_file

    sizes: dict[str, int | None] = {}
    for r in rows:
        if not mirror:
            sizes[r["task"]] = None
            continue
        try:
            path = mirror_file(mirror, r["dataset_path"], r["dataset_name"], r["split"])
        except SourceError:
            sizes[r["task"]] = 0
            continue
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            sizes[r["task"]] = pq.ParquetFile(path).metadata.num_rows
        else:
            with path.open("rb") as f:
                sizes[r["task"]] = sum(1 for line in f if line.strip())
    return sizes


def plan_rows(
    rows: list[dict[str, Any]], seeds_cfg: dict[str, Any], mirror: str | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows to collect, each with its `seed_quota`, and the allocation (subtasks given 0 are dropped)."""
    targets = Targets.from_config(seeds_cfg)
    sizes = split_sizes(rows, mirror) if targets.active else {}
    allocation = allocate(rows, sizes, targets, seeds_cfg.get("max_per_subtask"))
    allocation["sizes"] = sizes
    if not targets.active:
        return rows, allocation
    quota = allocation["per_task"]
    return [{**r, "seed_quota": quota[r["task"]]} for r in rows if quota[r["task"]] > 0], allocation
