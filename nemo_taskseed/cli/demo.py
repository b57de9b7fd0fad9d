"""`taskseed demo mirror DIR`: write the embedded demo seed mirror (original rows, HF mirror layout)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="demo data the project ships")
    sub = p.add_subparsers(dest="demo_command", required=True)
    m = sub.add_parser("mirror", help="write the demo seed mirror to DIR")
    m.add_argument("dir")
    m.set_defaults(func=_mirror)


def _mirror(args) -> int:
    from nemo_taskseed.demo import DEMO_FILES, write_demo_mirror

    root = write_demo_mirror(args.dir)
    for target in DEMO_FILES.values():
        print(root / target)
    return 0
