"""`taskseed preview [CONFIG] [-n N] [--tasks t1,t2] [--out DIR] [key=value ...]`: a few seeds
through the real generate and filter steps, shown seed by seed (nemo_taskseed/preview)."""

from __future__ import annotations

import os
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "preview",
        help="a few seeds through generate and filter, shown seed by seed (iterate on prompts in minutes)",
        description=(
            "Picks N seeds spread over the subtasks of seeds.tasks (or --tasks), runs the real generate and "
            "filter steps on them in OUT (default preview.workdir, runs/preview), and shows each seed with "
            "its new items, their enrichment and every filter check's verdict; OUT/preview.md has the full "
            "texts. Edit a prompt (configs/prompts/*.yaml, or the folder generate.prompts_dir names) and "
            "rerun: requests whose prompt changed are sent again, the rest come from OUT's caches."
        ),
    )
    p.add_argument("config", nargs="?", default="default", help="config file or name (default: default)")
    p.add_argument("-n", type=int, default=None, metavar="N", help="seeds to preview (default: preview.seeds)")
    p.add_argument(
        "--tasks", default=None, help="comma-separated subtasks, families or patterns (default: seeds.tasks)"
    )
    # dest `folder`, not `out`: the CLI's main routes logs for `args.out` before this command runs,
    # and the progress-bar switch below must be set before that imports tqdm (read at import).
    p.add_argument(
        "--out", dest="folder", default=None, metavar="DIR", help="preview folder (default: preview.workdir)"
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. generate.prompts_dir=my_prompts")
    p.set_defaults(func=_preview)


def _preview(args) -> int:
    quiet = getattr(args, "quiet", False)
    if quiet and not sys.stderr.isatty():
        # Captured output (CI, a file): progress bars would be hundreds of redrawn lines; the step
        # lines below say how far it got. tqdm reads TQDM_* when it is imported, so this comes first.
        os.environ.setdefault("TQDM_DISABLE", "1")
    from rich.console import Console

    from nemo_taskseed.cli._overrides import check_overrides
    from nemo_taskseed.config import load_config, section_settings

    config, overrides = args.config, list(args.overrides)
    if "=" in config:  # `taskseed preview key=value`: an override, the default config
        config, overrides = "default", [config, *overrides]
    cfg = load_config(config, check_overrides(overrides))
    out = args.folder or section_settings(None, cfg, "preview", ("workdir",))["workdir"]
    args.out = out  # where main() says a full disk or unwritable folder happened
    log = None
    if quiet:
        from nemo_taskseed.pipeline.logs import route_third_party_logs

        log = route_third_party_logs(out)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    if not (sys.stdout.encoding or "").lower().startswith("utf"):
        # Model output is any language: on an ASCII terminal a character it cannot show becomes "?"
        # instead of ending the command after the work is done.
        sys.stdout.reconfigure(errors="replace")
    console = Console()

    def on_step(step: str, seconds: float, _summary: dict) -> None:
        console.print(f"[dim]{step} done in {seconds:.0f} s[/]")

    from nemo_taskseed.preview import preview
    from nemo_taskseed.preview.render import print_footer, print_view

    result = preview(cfg, config_name=config, n=args.n, tasks=tasks, out=out, on_step=on_step)
    max_chars = int(section_settings(None, cfg, "preview", ("max_chars",))["max_chars"])
    print_view(console, result.header, result.view, max_chars)
    print_footer(console, result.counts, result.reasons, str(result.run.out), str(log) if log else None)
    return 0
