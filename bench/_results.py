"""Write a bench's printed result table into docs/benchmarks.md, so the page is regenerated, not retyped.

Each bench wraps the part of its output that is the result in `publish_output(NAME)`: what it
prints there still goes to the terminal, and when the block finishes without an exception the same
text replaces the marked block of docs/benchmarks.md

    <!-- bench:NAME:start -->
    ...
    <!-- bench:NAME:end -->

with the date, the machine (cores, load average, Python) and the exact command line above it.
Everything outside the markers (how to read the numbers, what was concluded) is hand-written and
left alone. A page without the block gets it appended under a `## NAME` heading.

`TASKSEED_BENCH_DOCS=0` leaves the page alone (a quick `--sizes 1000` run need not replace the
recorded one); `TASKSEED_BENCH_DOCS=/path/to/file.md` writes there instead.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import os
import platform
import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS_PAGE = REPO / "docs" / "benchmarks.md"


def machine_line() -> str:
    """One line that says what the numbers were measured on (load matters on a shared box)."""
    try:
        load = "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())
    except OSError:  # not every platform has a load average
        load = "load n/a"
    cpu = platform.processor() or platform.machine()
    return f"{platform.system()} {cpu}, {os.cpu_count()} cores, {load}, Python {platform.python_version()}"


def render_block(name: str, text: str, *, command: str, date: str | None = None, machine: str | None = None) -> str:
    """The block's content: date, machine and command, then the printed table as a code block."""
    date = date or _dt.date.today().isoformat()
    machine = machine or machine_line()
    body = text.strip("\n")
    return (
        f"<!-- bench:{name}:start -->\n"
        f"Last run {date} on {machine}: `{command}`\n\n"
        f"```\n{body}\n```\n"
        f"<!-- bench:{name}:end -->"
    )


def replace_block(page: str, name: str, block: str) -> str:
    """`page` with the `name` block replaced by `block` (appended under `## name` when absent)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"bench block name {name!r}: letters, digits, '_', '.', '-' only")
    pattern = re.compile(rf"<!-- bench:{re.escape(name)}:start -->.*?<!-- bench:{re.escape(name)}:end -->", re.S)
    found = pattern.findall(page)
    if len(found) > 1:
        raise ValueError(f"docs/benchmarks.md has {len(found)} blocks named {name!r}; expected one")
    if found:
        return pattern.sub(lambda _: block, page, count=1)
    return page.rstrip("\n") + f"\n\n## {name}\n\n{block}\n"


def update_docs(
    name: str,
    text: str,
    *,
    command: str | None = None,
    page: Path | None = None,
    date: str | None = None,
    machine: str | None = None,
) -> Path | None:
    """Write `text` into the `name` block of the benchmarks page; returns the page written, or None."""
    target = os.environ.get("TASKSEED_BENCH_DOCS", "")
    if target == "0":
        return None
    path = Path(page or target or DOCS_PAGE)
    command = command or " ".join(["python", *map(shlex.quote, _relative_argv())])
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    new = replace_block(old, name, render_block(name, text, command=command, date=date, machine=machine))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(new)
    tmp.replace(path)
    return path


class _Tee(io.TextIOBase):
    def __init__(self, stream):
        self.stream, self.buffer = stream, io.StringIO()

    def write(self, s: str) -> int:
        self.stream.write(s)
        self.buffer.write(s)
        return len(s)

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def publish_output(name: str, *, page: Path | None = None):
    """Print as usual inside the block; on success the printed text becomes the `name` block."""
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield tee
    written = update_docs(name, tee.buffer.getvalue(), page=page)
    if written is not None:
        print(f"results -> {written} (block bench:{name})")


def _relative_argv() -> list[str]:
    argv = list(sys.argv)
    if argv:
        try:
            argv[0] = str(Path(argv[0]).resolve().relative_to(REPO))
        except ValueError:
            pass
    return argv
