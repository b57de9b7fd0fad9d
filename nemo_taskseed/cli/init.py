"""`taskseed init DIR`: a project folder with an editable copy of the packaged configs."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "init",
        help="copy the packaged configs into DIR/configs to edit them (run taskseed from DIR)",
        description=(
            "Writes DIR/configs/: every stage's defaults (base/), the jobs (default, paper), prompts, presets, "
            "blends and eval configs, as the installed package ships them. Run taskseed from DIR (or set "
            "TASKSEED_CONFIG_DIR=DIR/configs): a config name is looked up there first, then in the package, and "
            "DIR/configs/base/*.yaml are layered over the packaged defaults, so a file you delete falls back to "
            "the package's."
        ),
    )
    p.add_argument("dir", help="the project folder (created if missing)")
    p.add_argument("--force", action="store_true", help="overwrite files that already exist in DIR/configs")
    p.set_defaults(func=_init)


def _init(args) -> int:
    from pathlib import Path

    from nemo_taskseed.project import init_project

    written, kept = init_project(Path(args.dir), force=args.force)
    print(f"wrote {len(written)} config files under {Path(args.dir) / 'configs'}", end="")
    print(f"; kept {len(kept)} that were already there (--force overwrites them)" if kept else "")
    print(f"next: cd {args.dir} && taskseed run default")
    return 0
