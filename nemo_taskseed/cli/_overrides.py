"""Config overrides on the command line: positional `key=value` words for every subcommand.

`tokenize` and `blend` used to take them as `-s key=value`; that spelling still works, hidden from
`--help`, with a warning, so scripts written for it keep running while they are updated.
"""

from __future__ import annotations

import argparse
import sys


def add_deprecated_set(parser: argparse.ArgumentParser) -> None:
    """`-s/--set KEY=VALUE` (repeatable), kept as a hidden alias of positional `key=value`."""
    parser.add_argument(
        "-s", "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help=argparse.SUPPRESS
    )


def take_deprecated_sets(command: str, sets: list[str]) -> list[str]:
    """The `-s` overrides, after a warning that names the spelling to use instead."""
    if sets:
        words = " ".join(sets)
        print(
            f"taskseed {command}: warning: -s/--set is deprecated; give overrides as key=value words: {words}",
            file=sys.stderr,
        )
    return list(sets)


def check_overrides(words: list[str]) -> list[str]:
    """Positional overrides must each be key=value (a stray word is a user error, not ignored)."""
    from nemo_taskseed.errors import UserError

    bad = [w for w in words if "=" not in w]
    if bad:
        raise UserError(f"unexpected argument(s) {' '.join(bad)}: overrides must be key=value")
    return list(words)


class OverridesParser(argparse.ArgumentParser):
    """A subcommand parser that takes `key=value` overrides anywhere after the subcommand.

    argparse fills a `nargs="*"` positional from the first run of positional words only, so
    `taskseed tokenize a.jsonl --out OUT tokenize.progress=false` would fail with "unrecognized
    arguments". Words left over that look like overrides (contain `=`, do not start with `-`) are
    appended to the subcommand's `overrides` (or `inputs`, for tokenize) list instead, in order.
    """

    OVERRIDE_DESTS = ("overrides", "inputs")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        dest = next((a.dest for a in self._actions if a.dest in self.OVERRIDE_DESTS and a.nargs == "*"), None)
        if dest is None or not extras:
            return namespace, extras
        words = [w for w in extras if "=" in w and not w.startswith("-")]
        if words:
            setattr(namespace, dest, list(getattr(namespace, dest, None) or []) + words)
            extras = [w for w in extras if not ("=" in w and not w.startswith("-"))]
        return namespace, extras
