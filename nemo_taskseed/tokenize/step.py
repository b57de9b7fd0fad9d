"""`taskseed run` step: tokenize the previous step's records (`tokenize.input_glob`) into Megatron
datasets, one shard per input file, on `tokenize.executor` (inherit: `run.executor`)."""

from __future__ import annotations

from pathlib import Path

from nemo_taskseed.config import section_settings
from nemo_taskseed.pipeline import publish
from nemo_taskseed.tokenize.megatron import TokenizeError, TokenizeOptions, run_tokenize


def tokenizer_path_from_config(section) -> Path:
    if section.get("tokenizer"):
        return Path(section.tokenizer)
    from nemo_taskseed.models import prepare_model

    return Path(prepare_model())


def _is_reject_file(path: Path, in_dir: Path) -> bool:
    try:
        parts = path.relative_to(in_dir).parts
    except ValueError:
        parts = path.parts
    return any(p == "rejected" for p in parts[:-1]) or parts[-1].startswith(("rejected", "rejects"))


def _glob(in_dir: Path, patterns: list[str]) -> list[Path]:
    found = {p for pattern in patterns for p in in_dir.glob(pattern) if p.is_file()}
    return sorted(p for p in found if not _is_reject_file(p, in_dir))


def input_files(section, in_dir: Path) -> list[Path]:
    """The input files of `in_dir` per `tokenize.input_glob`; each becomes one shard.

    `input_glob` is one pattern, a list of patterns (their union), or a list of groups (lists of
    patterns): then the first group that matches any file wins. The default prefers the filter
    step's kept records (`curated/part-*.jsonl`, legacy `curated*.jsonl`) and falls back to the
    generate step's (`generated/part-*.jsonl`, legacy `generated*.jsonl`). Rejects
    (`rejected/part-*.jsonl`, `rejected*.jsonl`, `rejects.jsonl`) are never input.
    """
    in_dir = Path(in_dir)
    files = _input_files(section, in_dir)
    # A folder a taskseed step wrote: only the parts its finished run published (pipeline/publish.py).
    for kind in ("curated", "generated"):
        if any(f.parent == in_dir / kind for f in files):
            published = publish.published_files(in_dir, kind)
            if published is not None:
                listed = set(published)
                files = [f for f in files if f.parent != in_dir / kind or f in listed]
    return files


def _input_files(section, in_dir: Path) -> list[Path]:
    patterns = section_settings(None, section, "tokenize", ["input_glob"])["input_glob"]
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    if any(not isinstance(p, str) for p in patterns):
        groups = [[p] if isinstance(p, str) else [str(x) for x in p] for p in patterns]
        for group in groups:
            files = _glob(in_dir, group)
            if files:
                return files
        flat = [p for group in groups for p in group]
    else:
        files = _glob(in_dir, [str(p) for p in patterns])
        if files:
            return files
        flat = patterns
    raise TokenizeError(f"no {' or '.join(map(str, flat))} files in {in_dir}")


def tokenize_inputs(
    section,
    out_dir: Path,
    *,
    files: list[Path] | None = None,
    in_dir: Path | None = None,
    workers: int | None = None,
    run_executor: str | None = None,
) -> tuple[dict, dict]:
    """Tokenize the given files, or `in_dir`'s input files, into `out_dir`; returns `(manifest, run)`.

    What `taskseed run` and `taskseed tokenize` both call; `check_rejects` then applies
    `tokenize.fail_on_rejects` (after the datasets are written, so nothing done is lost)."""
    if (files is None) == (in_dir is None):
        raise TokenizeError("give JSONL files or --in DIR (one of them)")
    files = input_files(section, in_dir) if in_dir is not None else [Path(f) for f in files]
    if not files:
        raise TokenizeError("no input: give JSONL files or --in DIR")
    opts = TokenizeOptions.from_config(section, tokenizer_path_from_config(section), run_executor=run_executor)
    if workers is not None:
        opts.workers = workers
    return run_tokenize(files, out_dir, opts)


def check_rejects(section, manifest: dict, out_dir: Path) -> None:
    if section.get("fail_on_rejects") and manifest["totals"]["rejected"]:
        raise TokenizeError(
            f"{manifest['totals']['rejected']} bad input lines were rejected (see {Path(out_dir) / 'rejects.jsonl'}) "
            "and tokenize.fail_on_rejects=true"
        )


def run_step(cfg, in_dir: Path, out_dir: Path) -> dict:
    run_executor = section_settings(None, cfg, "run", ["executor"])["executor"]
    manifest, run = tokenize_inputs(cfg.tokenize, out_dir, in_dir=in_dir, run_executor=run_executor)
    check_rejects(cfg.tokenize, manifest, out_dir)
    return {
        "step": "tokenize",
        "out_dir": str(out_dir),
        **manifest["totals"],
        "merged": manifest["merged"],
        "shards": run,
    }
