"""`taskseed report`: baseline vs checkpoints from the per-run results JSONL, plus the data report.

Outputs (in one folder): `deltas.csv` (one row per checkpoint x benchmark, and per group),
`report.md` (the delta tables, and the data report if given), `scores.png` (group means and
benchmarks across steps). Scores are in points (x100); a group's score is the unweighted mean of
its benchmarks that were scored at that step.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from statistics import mean

from nemo_taskseed.errors import UserError
from nemo_taskseed.evaluate.runner import read_rows
from nemo_taskseed.evaluate.tasks import GROUPS


def _latest_rows(rows: list[dict]) -> dict[tuple[int, str], dict]:
    """(step, benchmark) -> the newest row (a re-scored checkpoint replaces the older score)."""
    latest: dict[tuple[int, str], dict] = {}
    for row in rows:
        if row.get("value") is None:
            continue
        latest[(int(row["step"]), row["benchmark"])] = row
    return latest


def score_table(rows: list[dict]) -> tuple[list[int], dict[int, dict[str, float]], dict[str, str]]:
    """steps, {step: {benchmark or group: score}}, {benchmark: group}."""
    latest = _latest_rows(rows)
    if not latest:
        raise UserError("no scored rows in the results file")
    group_of = {bench: row["group"] for (_, bench), row in latest.items()}
    table: dict[int, dict[str, float]] = defaultdict(dict)
    for (step, bench), row in latest.items():
        table[step][bench] = 100.0 * float(row["value"])
    for scores in table.values():
        for group in GROUPS:
            members = [scores[b] for b, g in group_of.items() if g == group and b in scores]
            if members:
                scores[f"group:{group}"] = mean(members)
    return sorted(table), dict(table), group_of


def deltas(rows: list[dict], baseline_step: int | None = None) -> list[dict]:
    steps, table, group_of = score_table(rows)
    base = steps[0] if baseline_step is None else baseline_step
    if base not in table:
        raise UserError(f"baseline step {base} is not in the results (steps: {steps})")
    out = []
    keys = sorted(group_of) + [f"group:{g}" for g in GROUPS]
    for step in steps:
        if step == base:
            continue
        for key in keys:
            if key in table[step] and key in table[base]:
                out.append(
                    {
                        "step": step,
                        "name": key.removeprefix("group:"),
                        "kind": "group" if key.startswith("group:") else "benchmark",
                        "group": key.removeprefix("group:") if key.startswith("group:") else group_of[key],
                        "baseline": round(table[base][key], 2),
                        "score": round(table[step][key], 2),
                        "delta": round(table[step][key] - table[base][key], 2),
                    }
                )
    return out


def _markdown_table(header: list[str], body: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def plot_scores(rows: list[dict], png_path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on compute nodes or CI
    import matplotlib.pyplot as plt

    steps, table, group_of = score_table(rows)
    fig, (ax_groups, ax_bench) = plt.subplots(1, 2, figsize=(12, 4.5))
    for group in GROUPS:
        xs = [s for s in steps if f"group:{group}" in table[s]]
        if xs:
            ax_groups.plot(xs, [table[s][f"group:{group}"] for s in xs], marker="o", label=group)
    for bench in sorted(group_of):
        xs = [s for s in steps if bench in table[s]]
        ax_bench.plot(xs, [table[s][bench] for s in xs], marker=".", label=bench)
    for ax, title in ((ax_groups, "groups (mean of benchmarks)"), (ax_bench, "benchmarks")):
        ax.set_xlabel("training step (0 = baseline)")
        ax.set_ylabel("score (points)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


def data_report_markdown(paths: list[str | Path]) -> str:
    """The pipeline's own numbers, from plan.json (families, tokens) and JSON stats files
    (rejection reasons, contamination): shown as written, keyed by file."""
    parts = ["## Data"]
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"data report input not found: {path}")
        data = json.loads(path.read_text())
        parts.append(f"### {path.name}")
        if isinstance(data, dict) and "data_paths" in data:
            parts.append(
                f"seq_length {data.get('seq_length')}, total_tokens {data.get('total_tokens'):,}"
                if isinstance(data.get("total_tokens"), int)
                else ""
            )
            entries = data.get("entries") or []
            if entries and isinstance(entries[0], dict):
                header = sorted({k for e in entries for k, v in e.items() if not isinstance(v, (dict, list))})
                parts.append(_markdown_table(header, [[e.get(k, "") for k in header] for e in entries]))
            else:
                parts.append(_markdown_table(["weight", "prefix"], [list(p) for p in data["data_paths"]]))
        elif isinstance(data, dict):
            flat = [[k, json.dumps(v) if isinstance(v, (dict, list)) else v] for k, v in data.items()]
            parts.append(_markdown_table(["key", "value"], flat))
        else:
            parts.append(f"```\n{json.dumps(data, indent=2)[:4000]}\n```")
    return "\n\n".join(p for p in parts if p)


def build_report(
    results_path: str | Path,
    out_dir: str | Path,
    *,
    baseline_step: int | None = None,
    data_inputs: list[str | Path] = (),
) -> dict[str, Path]:
    rows = read_rows(results_path)
    if not rows:
        raise UserError(f"no results in {results_path} (run `taskseed evaluate` first)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    delta_rows = deltas(rows, baseline_step)
    csv_path = out / "deltas.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", "kind", "group", "name", "baseline", "score", "delta"])
        writer.writeheader()
        writer.writerows(delta_rows)
    steps, table, group_of = score_table(rows)
    run_names = sorted({r.get("run", "?") for r in rows})
    md = [
        f"# Evaluation report: {', '.join(run_names)}",
        f"Results: `{results_path}`; baseline step {steps[0] if baseline_step is None else baseline_step}; "
        f"scores in points, delta = checkpoint - baseline.",
    ]
    if not delta_rows:
        md.append("Only the baseline has been scored so far.")
    for step in sorted({d["step"] for d in delta_rows}):
        step_rows = [d for d in delta_rows if d["step"] == step]
        md.append(f"## Step {step}")
        md.append(
            _markdown_table(
                ["kind", "group", "name", "baseline", "score", "delta"],
                [
                    [
                        d["kind"],
                        d["group"],
                        d["name"],
                        f"{d['baseline']:.2f}",
                        f"{d['score']:.2f}",
                        f"{d['delta']:+.2f}",
                    ]
                    for d in sorted(step_rows, key=lambda d: (d["kind"] != "group", d["group"], d["name"]))
                ],
            )
        )
    md.append("## Scored benchmarks")
    md.append(
        _markdown_table(
            ["benchmark", "group", "metric", "few-shot", "limit", "local data"],
            [
                [b, group_of[b], r["metric"], r["num_fewshot"], r["limit"], r.get("local_data")]
                for b, r in sorted({row["benchmark"]: row for row in rows}.items())
                if b in group_of
            ],
        )
    )
    if data_inputs:
        md.append(data_report_markdown(list(data_inputs)))
    md_path = out / "report.md"
    md_path.write_text("\n\n".join(md) + "\n")
    png_path = plot_scores(rows, out / "scores.png")
    return {"csv": csv_path, "markdown": md_path, "png": png_path}
