"""`taskseed run` step: tokenize every `*.jsonl` of the previous step into Megatron datasets."""

from __future__ import annotations

from pathlib import Path

from nemo_taskseed.tokenize.megatron import TokenizeError, TokenizeOptions, tokenize_files


def tokenizer_path_from_config(section) -> Path:
    if section.get("tokenizer"):
        return Path(section.tokenizer)
    from nemo_taskseed.models import prepare_model

    return Path(prepare_model())


def tokenize_dir(section, in_dir: Path, out_dir: Path, *, workers: int | None = None) -> dict:
    """Tokenize `in_dir/<input_glob>` into `out_dir`; returns the manifest."""
    files = sorted(Path(in_dir).glob(section.get("input_glob", "*.jsonl")))
    if not files:
        raise TokenizeError(f"no {section.get('input_glob', '*.jsonl')} files in {in_dir}")
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
