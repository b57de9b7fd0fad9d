"""Build the n-gram index over every scored split of the configured benchmarks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from nemo_taskseed.filter.decontam.benchmarks import Benchmark, load_split_rows, scored_splits
from nemo_taskseed.filter.decontam.ngrams import BenchmarkRow, NgramIndex
from nemo_taskseed.filter.decontam.render import rendered_rows
from nemo_taskseed.filter.text import string_leaves
from nemo_taskseed.utils.lm_eval_yaml import template_config

log = logging.getLogger(__name__)


@dataclass
class BenchmarkCoverage:
    """What the index holds for one scored split, for the contamination report."""

    benchmark: str
    split: str
    tasks: list[str]
    source: str
    rows: int = 0
    loaded: bool = False
    # lm-eval renderings indexed beside the raw rows (task names), and the ones that failed (why).
    rendered: list[str] = field(default_factory=list)
    render_errors: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DecontamIndex:
    index: NgramIndex
    coverage: list[BenchmarkCoverage] = field(default_factory=list)
    # Per scored row, the texts the semantic check embeds (filter/semantic/views.py): one entry per
    # (row, view): [benchmark, split, row, view, text]. Made from the same lm-eval
    # rendering the n-gram index holds (the raw row only where the task cannot be rendered).
    views: list[list[Any]] = field(default_factory=list)

    @property
    def missing(self) -> list[BenchmarkCoverage]:
        return [c for c in self.coverage if not c.loaded]


def build_index(
    benchmarks: Sequence[Any],
    *,
    source: str = "auto",
    mirror: str | Path | None = None,
    ngram_size: int = 13,
    short_min_words: int = 5,
    unordered: bool = False,
    include_paths: Sequence[str | Path] = (),
    progress: bool = False,
    rendered: bool = True,
) -> DecontamIndex:
    benches = [b if isinstance(b, Benchmark) else Benchmark.from_config(b) for b in benchmarks]
    from nemo_taskseed.filter.semantic.views import benchmark_views

    index = NgramIndex(ngram_size, short_min_words, unordered)
    coverage = []
    views: list[list[Any]] = []
    mirror = Path(mirror) if mirror else None
    splits = scored_splits(benches, include_paths)
    for split in tqdm(splits, desc="decontam index", unit="split", disable=not progress):
        where, rows = load_split_rows(split, source, mirror)
        cov = BenchmarkCoverage(split.benchmark, split.label, sorted(split.tasks), where)
        if rows is not None:
            cov.loaded = True
            rows = list(rows)
            for i, row in enumerate(rows):
                index.add(BenchmarkRow(split.benchmark, split.label, i), string_leaves(row))
                cov.rows += 1
            # Raw rows first: a tie in the evidence goes to the raw row (the earliest indexed).
            # What we embed: the rendering of the plainest task of the split (the shortest task name:
            # gsm8k, not gsm8k_cot_llama with its instruction preamble) that keeps one document per row.
            first_docs, first_name = None, None
            for view in split.renderings if rendered else ():
                try:  # the task's template functions are imported here, for indexed tasks only
                    docs = list(rendered_rows(template_config(view["path"]), rows))
                except Exception as exc:  # a task module that needs more than the row: raw rows only
                    cov.render_errors[view["task"]] = f"{type(exc).__name__}: {str(exc)[:200]}"
                    continue
                for i, doc in enumerate(docs):
                    index.add(BenchmarkRow(split.benchmark, split.label, i, f"rendered:{view['task']}"), doc.strings)
                cov.rendered.append(view["task"])
                if len(docs) == len(rows) and (first_name is None or len(view["task"]) < len(first_name)):
                    first_docs, first_name = docs, view["task"]
            for i, row in enumerate(rows):
                row_views = benchmark_views(row, first_docs[i] if first_docs else None)
                views.extend([split.benchmark, split.label, i, name, text] for name, text in row_views)
        else:
            log.debug("decontam: %s %s not loaded (%s)", split.benchmark, split.label, where)
        coverage.append(cov)
    missing = [c for c in coverage if not c.loaded]
    if missing:
        log.warning(
            "decontam: %d of %d scored splits not loaded (see the contamination report), e.g. %s",
            len(missing),
            len(coverage),
            ", ".join(f"{c.benchmark} {c.split}" for c in missing[:3]),
        )
    return DecontamIndex(index, coverage, views)
