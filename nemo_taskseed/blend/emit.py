"""Everything a training run consumes, written from one plan so the formats cannot drift apart."""

from __future__ import annotations

import json
from pathlib import Path

from nemo_taskseed.utils.jsonl import write_text_atomic

ARTIFACTS = {
    "plan": "plan.json",
    "data_args": "data_args.txt",  # Megatron-LM --data-args-path
    "per_split_data_args": "per_split_data_args.json",  # Megatron-LM --per-split-data-args-path
    "bridge_overrides": "bridge_overrides.txt",  # Megatron-Bridge CLI overrides, one per line
    "nemo2": "nemo2_datamodule.json",  # NeMo 2 PreTrainingDataModule(paths=..., seq_length=...)
    "table": "plan.md",
    "plot": "plan.png",
}


def _weight(value: float) -> str:
    # repr keeps every digit: Megatron re-normalizes, so rounding here would shift shares.
    return repr(float(value))


def data_args_words(plan: dict) -> list[str]:
    words = []
    for weight, prefix in plan["data_paths"]:
        if any(c.isspace() for c in prefix):
            raise ValueError(f"Megatron splits data args on whitespace: prefix {prefix!r} contains a space")
        words += [_weight(weight), prefix]
    return words


def _split_blend(plan: dict, choice) -> list[str] | None:
    """A valid/test blend: "train" (same as train), null (not built), or an explicit `w p ...` list."""
    if choice is None:
        return None
    if choice == "train":
        return data_args_words(plan)
    return [str(x) for x in choice]


def write_artifacts(plan: dict, out_dir: Path, *, valid="train", test="train", plot: bool = True) -> dict[str, str]:
    """Write every artifact of `plan` into `out_dir`; returns {artifact: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: out_dir / name for key, name in ARTIFACTS.items()}
    words = data_args_words(plan)

    write_text_atomic(paths["plan"], json.dumps(plan, indent=2, ensure_ascii=False) + "\n")
    # One `weight prefix` pair per line: Megatron reads the file with str.split(), so lines are cosmetic.
    write_text_atomic(paths["data_args"], "".join(f"{w} {p}\n" for w, p in zip(words[::2], words[1::2])))
    per_split = {"train": words, "valid": _split_blend(plan, valid), "test": _split_blend(plan, test)}
    write_text_atomic(paths["per_split_data_args"], json.dumps(per_split, indent=2) + "\n")

    prefixes = json.dumps([p for _, p in plan["data_paths"]])
    weights = "[" + ",".join(_weight(w) for w, _ in plan["data_paths"]) + "]"
    bridge = [f"dataset.blend=[{prefixes},{weights}]".replace(" ", ""), f"dataset.seq_length={plan['seq_length']}"]
    write_text_atomic(paths["bridge_overrides"], "\n".join(bridge) + "\n")

    flat = []
    for weight, prefix in plan["data_paths"]:
        flat += [float(weight), prefix]
    nemo2 = {
        "paths": flat,
        "paths_per_split": {
            k: v
            for k, v in (("train", words), ("validation", per_split["valid"]), ("test", per_split["test"]))
            if v is not None
        },
        "seq_length": plan["seq_length"],
        "note": "PreTrainingDataModule(paths=paths, seq_length=seq_length, ...); with `paths` NeMo splits "
        "train/validation/test by its `split` argument, with `paths_per_split` it does not split",
    }
    write_text_atomic(paths["nemo2"], json.dumps(nemo2, indent=2) + "\n")
    write_text_atomic(paths["table"], markdown_table(plan))
    if plot:
        plot_plan(plan, paths["plot"])
    else:
        paths.pop("plot")
    return {k: str(v) for k, v in paths.items()}


def _tokens(n: float | None) -> str:
    if n is None:
        return "?"
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def table_rows(plan: dict) -> list[list[str]]:
    rows = []
    for e in plan["entries"]:
        rows.append(
            [
                e["name"],
                e["source"],
                e["family"],
                e["group"],
                _tokens(e["available_tokens"]),
                _tokens(e["tokens"]),
                "?" if e["epochs"] is None else f"{e['epochs']:.3g}",
                f"{100 * e['share']:.4g}%",
                e.get("bound") or "",
            ]
        )
    return rows


TABLE_HEADER = ["dataset", "source", "family", "group", "available", "planned", "epochs", "share", "bound"]


def markdown_table(plan: dict) -> str:
    lines = [
        f"# Blend plan: {_tokens(plan['total_tokens'])} tokens, seq_length {plan['seq_length']}, "
        f"{plan['total_samples']:,} samples, synthetic share {plan['synthetic_share']:.4g}",
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|" + "|".join("---" for _ in TABLE_HEADER) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(plan)]
    lines += ["", "| group | planned | share | quota |", "|---|---|---|---|"]
    for group, g in sorted(plan["groups"].items()):
        quota = "" if g["quota"] is None else f"{g['quota']:.4g} of synthetic"
        lines.append(f"| {group} | {_tokens(g['tokens'])} | {100 * g['share']:.4g}% | {quota} |")
    formats = plan.get("formats") or {}
    if formats.get("shares"):
        quotas = formats.get("quotas") or {}
        lines += ["", f"| format | planned | share of synthetic | quota ({formats['status']}) |", "|---|---|---|---|"]
        for fmt, share in formats["shares"].items():
            quota = "" if fmt not in quotas else f"{quotas[fmt]:.4g}"
            lines.append(f"| {fmt} | {_tokens(formats['tokens'][fmt])} | {100 * share:.4g}% | {quota} |")
    for warning in plan.get("warnings", []):
        lines += ["", f"**Warning:** {warning}"]
    return "\n".join(lines) + "\n"


def print_table(plan: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(
        title=f"blend plan: {_tokens(plan['total_tokens'])} tokens at seq_length {plan['seq_length']} "
        f"({plan['total_samples']:,} samples)"
    )
    for col in TABLE_HEADER:
        table.add_column(col, justify="right" if col in {"available", "planned", "epochs", "share"} else "left")
    for row in table_rows(plan):
        table.add_row(*row)
    console.print(table)
    formats = plan.get("formats") or {}
    if formats.get("shares"):
        shares = ", ".join(f"{fmt} {100 * share:.2f}%" for fmt, share in formats["shares"].items())
        console.print(f"formats of the synthetic tokens: {shares} (format_quotas: {formats['status']})")
    for warning in plan.get("warnings", []):
        console.print(f"[bold yellow]warning:[/bold yellow] {warning}", soft_wrap=True)


def plot_plan(plan: dict, path: Path) -> None:
    """Two panels: each dataset's share of the budget (coloured by group), and its epochs."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on training clusters or CI
    import matplotlib.pyplot as plt

    entries = plan["entries"]
    names = [e["name"] for e in entries]
    groups = sorted({e["group"] for e in entries})
    palette = plt.get_cmap("tab10")
    colour = {g: palette(i % 10) for i, g in enumerate(groups)}
    height = max(2.5, 0.32 * len(entries) + 1.2)
    fig, (ax_share, ax_epochs) = plt.subplots(1, 2, figsize=(12, height), sharey=True)
    y = range(len(entries))
    ax_share.barh(y, [100 * e["share"] for e in entries], color=[colour[e["group"]] for e in entries])
    ax_share.set_yticks(list(y), names, fontsize=8)
    ax_share.invert_yaxis()
    ax_share.set_xlabel("share of the token budget (%)")
    ax_share.set_title(f"{_tokens(plan['total_tokens'])} tokens, synthetic {100 * plan['synthetic_share']:.3g}%")
    ax_epochs.barh(y, [e["epochs"] or 0.0 for e in entries], color=[colour[e["group"]] for e in entries])
    ax_epochs.set_xlabel("epochs over the available tokens")
    epochs = [e["epochs"] for e in entries if e["epochs"]]
    if epochs and max(epochs) / max(min(epochs), 1e-9) > 100:
        ax_epochs.set_xscale("log")  # tiny synthetic sets repeat 1000s of times next to web data at < 1
    max_epochs = plan["settings"].get("max_epochs")
    if max_epochs:
        ax_epochs.axvline(max_epochs, color="black", linestyle="--", linewidth=1, label=f"max_epochs={max_epochs:g}")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[g]) for g in groups]
    ax_share.legend(handles, groups, loc="lower right", fontsize=8)
    if max_epochs:
        ax_epochs.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
