"""`taskseed evaluate run|watch`: score a model or every new checkpoint with lm-eval."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="lm-eval on checkpoints; results append to a per-run JSONL")
    sub = parser.add_subparsers(dest="evaluate_command", required=True)

    run = sub.add_parser("run", help="score one Hugging Face model folder (a checkpoint's hf/ export or the baseline)")
    run.add_argument("overrides", nargs="*", help="key=value overrides, e.g. eval.backend=hf eval.limit=50")
    run.add_argument("--model", required=True, help="HF model folder")
    run.add_argument("--step", type=int, default=0, help="training step of this model (0 = baseline)")
    run.add_argument("--label", default=None, help="row label (default: baseline for step 0, else step_<N>)")
    run.add_argument("--results", default=None, help="results JSONL (default: eval.results)")
    run.add_argument("--config", default=None, help="config file")
    run.set_defaults(func=_run)

    watch = sub.add_parser("watch", help="score the baseline and each new checkpoint as training saves them")
    watch.add_argument("overrides", nargs="*", help="key=value overrides")
    watch.add_argument("--checkpoints", required=True, help="training checkpoint folder (iter_*/hf exports)")
    watch.add_argument("--baseline", default=None, help="HF folder of the starting model, scored once as step 0")
    watch.add_argument("--results", default=None, help="results JSONL (default: eval.results)")
    watch.add_argument("--once", action="store_true", help="one pass over what is there, then exit")
    watch.add_argument("--config", default=None, help="config file")
    watch.set_defaults(func=_watch)


def _results_path(cfg, explicit: str | None) -> str:
    return explicit or cfg.eval.results or f"{cfg.train.output_dir}/eval/results.jsonl"


def _run(args) -> int:
    from nemo_taskseed.config import load_config
    from nemo_taskseed.evaluate.runner import evaluate_model

    cfg = load_config(args.config, list(args.overrides))
    results = _results_path(cfg, args.results)
    label = args.label or ("baseline" if args.step == 0 else f"step_{args.step}")
    rows = evaluate_model(args.model, cfg.eval, results, label=label, step=args.step)
    for row in rows:
        value = "n/a" if row["value"] is None else f"{row['value']:.4f}"
        print(f"{row['benchmark']:<18} {row['group']:<12} {row['metric']:<28} {value}  (n={row['n_samples']})")
    print(f"appended {len(rows)} rows to {results}")
    return 0


def _watch(args) -> int:
    from nemo_taskseed.config import load_config
    from nemo_taskseed.evaluate.watcher import watch

    cfg = load_config(args.config, list(args.overrides))
    results = _results_path(cfg, args.results)
    scored = watch(
        args.checkpoints,
        cfg.eval,
        results,
        baseline=args.baseline,
        once=args.once,
        poll_seconds=float(cfg.eval.poll_seconds),
    )
    print(f"scored {len(scored)} checkpoint(s); results in {results}")
    return 0
