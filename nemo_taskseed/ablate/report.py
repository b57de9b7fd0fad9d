"""`taskseed ablate report`: every arm against the baseline arm, per benchmark and per group.

Each arm's score is its last scored checkpoint's (the end of its run). A delta's standard error
combines lm-eval's stderr of both scores (sqrt(se_arm^2 + se_baseline^2)); a group's score is the
mean of its benchmarks (those both arms have), its stderr sqrt(sum se^2) / n. A difference is
beyond noise when |delta| > z x its standard error (`ablate.z`, 1.96: two-sided 95 %).

    <out>/ablation.md    the table (delta +- se, * beyond noise), the paper's deltas as a reference
                         row, each arm's tokens and what it changes
    <out>/ablation.csv   one row per arm x benchmark or group
    <out>/ablation.png   deltas with their error bars, one panel per group
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.evaluate.runner import read_rows
from nemo_taskseed.evaluate.tasks import GROUPS

COLUMNS = ["arm", "kind", "name", "group", "score", "stderr", "baseline", "delta", "delta_stderr", "beyond_noise"]


def final_scores(rows: list[dict]) -> tuple[int, dict[str, dict[str, Any]]]:
    """(last step, {benchmark: {score, stderr, group}}) in points: the last scored checkpoint."""
    scored = [r for r in rows if r.get("value") is not None]
    if not scored:
        return -1, {}
    step = max(int(r["step"]) for r in scored)
    out: dict[str, dict[str, Any]] = {}
    for row in scored:
        if int(row["step"]) == step:  # a re-scored checkpoint: the newest row wins
            stderr = row.get("stderr")
            out[row["benchmark"]] = {
                "score": 100.0 * float(row["value"]),
                "stderr": 100.0 * float(stderr) if isinstance(stderr, int | float) else None,
                "group": row["group"],
            }
    return step, out


def _with_groups(scores: dict[str, dict], names: set[str]) -> dict[str, dict]:
    """The benchmarks in `names`, plus `group:<g>` means over them."""
    out = {b: s for b, s in scores.items() if b in names}
    for group in GROUPS:
        members = [s for b, s in out.items() if s["group"] == group]
        if members:
            errors = [m["stderr"] for m in members]
            out[f"group:{group}"] = {
                "score": sum(m["score"] for m in members) / len(members),
                "stderr": None if None in errors else math.sqrt(sum(e * e for e in errors)) / len(members),
                "group": group,
            }
    return out


def compare(arm_rows: dict[str, list[dict]], baseline: str, z: float) -> list[dict]:
    """One row per arm (not the baseline) x benchmark and group: the delta and whether it is beyond noise."""
    if baseline not in arm_rows:
        raise UserError(f"the baseline arm {baseline!r} has no results; arms with results: {sorted(arm_rows)}")
    _, base = final_scores(arm_rows[baseline])
    if not base:
        raise UserError(f"the baseline arm {baseline!r} has no scored checkpoint yet")
    out = []
    for arm, rows in arm_rows.items():
        if arm == baseline:
            continue
        _, scores = final_scores(rows)
        common = set(scores) & set(base)
        mine, theirs = _with_groups(scores, common), _with_groups(base, common)
        for name in sorted(mine, key=lambda n: (n.startswith("group:"), n)):
            a, b = mine[name], theirs[name]
            delta = a["score"] - b["score"]
            se = None if a["stderr"] is None or b["stderr"] is None else math.hypot(a["stderr"], b["stderr"])
            out.append(
                {
                    "arm": arm,
                    "kind": "group" if name.startswith("group:") else "benchmark",
                    "name": name.removeprefix("group:"),
                    "group": a["group"],
                    "score": round(a["score"], 2),
                    "stderr": None if a["stderr"] is None else round(a["stderr"], 2),
                    "baseline": round(b["score"], 2),
                    "delta": round(delta, 2),
                    "delta_stderr": None if se is None else round(se, 2),
                    "beyond_noise": None if se is None else bool(abs(delta) > z * se),
                }
            )
    return out


def _key(row: dict) -> str:
    """A row's column: the benchmark, or `group:<name>` for a group."""
    return ("group:" if row["kind"] == "group" else "") + row["name"]


def _cell(row: dict | None) -> str:
    if row is None:
        return ""
    se = "" if row["delta_stderr"] is None else f" ± {row['delta_stderr']:.1f}"
    return f"{row['delta']:+.1f}{se}{' *' if row['beyond_noise'] else ''}"


def markdown(
    rows: list[dict], arms: list[dict], baseline: str, reference: dict[str, float], notes: list[str], z: float
) -> str:
    names = list(dict.fromkeys(_key(r) for r in rows))
    by = {(r["arm"], _key(r)): r for r in rows}
    header = ["arm", *[n.replace("group:", "group ") for n in names]]
    lines = [
        f"# Ablation: every arm against `{baseline}`",
        "",
        f"Points (x100) at each arm's last scored checkpoint; delta ± its standard error (lm-eval's stderr of "
        f"both scores); `*`: |delta| > {z:g} x se (beyond noise).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for arm in [a["name"] for a in arms if a["name"] != baseline]:
        if any(k[0] == arm for k in by):
            lines.append("| " + " | ".join([arm, *[_cell(by.get((arm, n))) for n in names]]) + " |")
    if reference:
        ref = [f"{reference[n]:+.1f}" if n in reference else "" for n in names]
        lines.append("| " + " | ".join(["*paper (reference)*", *ref]) + " |")
    lines += [
        "",
        "| arm | what it changes | tokens | synthetic tokens | GPU-hours (est.) |",
        "|---|---|---:|---:|---:|",
    ]
    for a in arms:
        hours = "" if a.get("gpu_hours") is None else f"{a['gpu_hours']:,.1f}"
        lines.append(f"| {a['name']} | {a['what']} | {a['total_tokens']:,} | {a['synthetic_tokens']:,} | {hours} |")
    lines += [""] + [f"> {note}" for note in notes]
    return "\n".join(lines).rstrip() + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(dict.fromkeys(r["arm"] for r in rows))
    names = list(dict.fromkeys(_key(r) for r in rows))
    by = {(r["arm"], _key(r)): r for r in rows}
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names) * max(1, len(arms)) / 3), 4))
    width = 0.8 / max(1, len(arms))
    for i, arm in enumerate(arms):
        xs = [j + i * width for j, n in enumerate(names) if (arm, n) in by]
        got = [by[(arm, n)] for n in names if (arm, n) in by]
        ax.bar(xs, [g["delta"] for g in got], width, label=arm, yerr=[g["delta_stderr"] or 0 for g in got], capsize=2)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names, rotation=30, ha="right")
    ax.set_ylabel("delta vs baseline (points)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_report(
    index: dict, arm_results: dict[str, str], out_dir: Path, *, baseline: str, reference: dict, z: float
) -> dict[str, Path]:
    """The table, CSV and plot of every arm with results against `baseline`."""
    arm_rows = {name: read_rows(path) for name, path in arm_results.items() if Path(path).is_file()}
    rows = compare(arm_rows, baseline, z)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "ablation.md", "csv": out_dir / "ablation.csv", "plot": out_dir / "ablation.png"}
    missing = sorted(set(a["name"] for a in index["arms"]) - set(arm_rows))
    notes = list(index.get("notes", [])) + ([f"no results yet for: {', '.join(missing)}"] if missing else [])
    paths["markdown"].write_text(markdown(rows, index["arms"], baseline, reference, notes, z))
    with paths["csv"].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    if rows:
        plot(rows, paths["plot"])
    else:
        paths.pop("plot")
    return paths
