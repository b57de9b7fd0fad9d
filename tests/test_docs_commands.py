"""Every `taskseed ...` command in a fenced block of README.md and docs/*.md parses as written.

The check is `--help`-level: the real argparse parser (`nemo_taskseed.cli.build_parser`) must
accept the command (the subcommand exists, every option is known, choices are valid, required
options are given), positional overrides must be `key=value`, and their keys must be keys the
config knows. Nothing is executed. Placeholders that docs use for optional parts are read as
written out: `[--opt X]` -> `--opt X`, `a|b` -> `a`, `...` dropped.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?:bash|sh|shell|console)[ \t]*\n(.*?)^```", re.S | re.M)  # shell blocks only


def _commands(page: Path) -> list[tuple[str, str]]:
    """(where, command) for each `taskseed` command line in the page's fenced blocks."""
    text = page.read_text()
    found = []
    for block in FENCE.finditer(text):
        first_line = text.count("\n", 0, block.start(1)) + 1
        lines = block.group(1).split("\n")
        i = 0
        while i < len(lines):
            start, line = i, lines[i]
            while line.rstrip().endswith("\\") and i + 1 < len(lines):  # shell continuation
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i].strip()
            i += 1
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            if line.startswith("taskseed ") or line == "taskseed":
                found.append((f"{page.relative_to(REPO)}:{first_line + start}", line))
    return found


def _words(command: str) -> list[str]:
    """The argv of a documented command, with comments and placeholders resolved."""
    words = shlex.split(command, comments=True)[1:]
    out = []
    for word in words:
        if word.startswith("[") and "=" not in word.split("[", 1)[0]:
            word = word[1:]  # an optional part: `[--mirror DIR]`
        if word.endswith("]") and word.count("[") < word.count("]"):
            word = word[:-1]
        if word in ("...", "…", "key=value"):
            continue  # "and so on", and the generic override placeholder
        if word == "N":
            word = "1"  # a number placeholder: `--max-per-subtask N`
        if "|" in word and "=" not in word:
            word = word.split("|", 1)[0]  # one of the alternatives: `inline|ray_data`
        if word:
            out.append(word)
    return out


COMMANDS = [c for page in PAGES for c in _commands(page)]


def test_docs_have_commands():
    assert len(COMMANDS) >= 20, COMMANDS
    assert any(where.startswith("README.md") for where, _ in COMMANDS)


@pytest.mark.parametrize("where,command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_command_parses(where, command):
    from nemo_taskseed.cli import build_parser

    argv = _words(command)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{where}: `{command}` does not parse (exit {exc.code}): {err.getvalue().strip()}")
    overrides = [w for w in (getattr(args, "overrides", None) or []) + (getattr(args, "sets", None) or [])]
    if args.command == "tokenize":
        overrides += [w for w in args.inputs if "=" in w]
    bad = [w for w in getattr(args, "overrides", None) or [] if "=" not in w]
    assert not bad, f"{where}: `{command}`: {bad} are not key=value overrides"
    if args.command in ("run",) or not overrides:
        return  # `run` overrides are checked against its config file's keys when it runs
    from nemo_taskseed.config import load_config
    from nemo_taskseed.errors import UserError

    try:
        load_config(None, overrides)
    except UserError as exc:
        pytest.fail(f"{where}: `{command}`: {exc}")


def test_help_lists_subcommands_in_pipeline_order():
    from nemo_taskseed.cli import build_parser

    text = build_parser().format_help()
    order = ["run", "catalog", "seeds", "generate", "filter", "tokenize", "blend", "launch", "evaluate", "report"]
    positions = [re.search(rf"^\s+{name}\s", text, re.M).start() for name in order]
    assert positions == sorted(positions), text


def test_deprecated_set_still_parses_and_warns(capsys):
    from nemo_taskseed.cli import build_parser
    from nemo_taskseed.cli._overrides import take_deprecated_sets

    args = build_parser().parse_args(
        ["blend", "plan", "--out", "o", "-s", "blend.max_epochs=8", "blend.seq_length=256"]
    )
    assert args.overrides == ["blend.seq_length=256"] and args.sets == ["blend.max_epochs=8"]
    assert take_deprecated_sets("blend plan", args.sets) == ["blend.max_epochs=8"]
    assert "deprecated" in capsys.readouterr().err
    # key=value words may also follow the options (argparse alone takes them only as one group).
    args = build_parser().parse_args(["blend", "verify", "p", "--build", "never", "blend.verify.build_max_samples=5"])
    assert args.plan == "p" and args.overrides == ["blend.verify.build_max_samples=5"]


LINK = re.compile(r"\]\(([^)#\s]+\.md)(#[^)\s]*)?\)")
PENDING = {"docs/catalog.md", "docs/blend.md", "docs/decontamination.md", "docs/architecture.md"}  # written elsewhere


def test_links_between_pages_resolve():
    for page in PAGES:
        for target, _ in LINK.findall(page.read_text()):
            if target.startswith("http"):
                continue
            path = (page.parent / target).resolve()
            rel = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
            assert path.exists() or rel in PENDING, f"{page.relative_to(REPO)} links to missing {target}"
