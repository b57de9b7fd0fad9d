"""`taskseed report`: delta tables (per benchmark and group) and a plot across steps, plus the data report."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="baseline vs checkpoints: deltas.csv, report.md, scores.png")
    parser.add_argument("--results", required=True, help="results JSONL written by `taskseed evaluate`")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--baseline-step", type=int, default=None, help="step to compare against (default: lowest)")
    parser.add_argument(
        "--data", nargs="*", default=[], help="pipeline JSON to include: plan.json, filter/decontamination stats"
    )
    parser.set_defaults(func=_report)


def _report(args) -> int:
    from nemo_taskseed.evaluate.report import build_report

    paths = build_report(args.results, args.out, baseline_step=args.baseline_step, data_inputs=args.data)
    print((paths["markdown"]).read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
