"""`taskseed run` step: tokenize the previous step's records (`tokenize.input_glob`) into Megatron datasets."""

from __future__ import annotations

from pathlib import Path

from nemo_taskseed.tokenize.megatron import TokenizeError, TokenizeOptions, tokenize_files


def tokenizer_path_from_config(section) -> Path:
    if section.get("tokenizer"):
        return Path(section.tokenizer)
    from nemo_taskseed.models import prepare_model

    return Path(prepare_model())


def input_files(section, in_dir: Path) -> list[Path]:
    """Files of `in_dir` matching any of `tokenize.input_glob` (one pattern or a list).

    The default lists the curated output of filtering and the raw output of generation; a step's
    folder holds one of them, never its rejects.
    """
    patterns = section.get("input_glob", "*.jsonl")
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    files = sorted({p for pattern in patterns for p in Path(in_dir).glob(pattern)})
    if not files:
        raise TokenizeError(f"no {' or '.join(patterns)} files in {in_dir}")
    return files


def tokenize_dir(section, in_dir: Path, out_dir: Path, *, workers: int | None = None) -> dict:
    """Tokenize `in_dir`'s input files into `out_dir`; returns the manifest."""
    files = input_files(section, in_dir)
    opts = TokenizeOptions.from_config(section, tokenizer_path_from_config(section))
    if workers is not None:
        opts.workers = workers
    manifest = tokenize_files(files, out_dir, opts)
    if section.get("fail_on_rejects") and manifest["totals"]["rejected"]:
        raise TokenizeError(
            f"{manifest['totals']['rejected']} bad input lines (see {Path(out_dir) / 'rejects.jsonl'}) "
            "and tokenize.fail_on_rejects=true"
        )
    return manifest


def run_step(cfg, in_dir: Path, out_dir: Path) -> dict:
    manifest = tokenize_dir(cfg.tokenize, in_dir, out_dir)
    return {"step": "tokenize", "out_dir": str(out_dir), **manifest["totals"]}
