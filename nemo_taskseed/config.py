"""OmegaConf configs: YAML files under `configs/`, overridden by `key=value` dot-lists."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nemo_taskseed.errors import UserError
from nemo_taskseed.paths import config_dirs, config_files, find_config, packaged_configs_dir


class ConfigError(UserError):
    """A config file or override that cannot be used; the message names the file and key."""


def resolve_config_path(path: str | Path) -> Path:
    """Accept a path, or a config name (with or without `.yaml`) in the project's `configs/` or the
    package's (`taskseed run default` works from any directory)."""
    p = Path(path)
    if p.is_file():
        return p
    found = find_config(p)
    if found is None and p.parts[:1] == ("configs",) and len(p.parts) > 1:
        # `configs/default.yaml` as a checkout used to spell it: the same file of the config tree.
        found = find_config(Path(*p.parts[1:]))
    if found is not None:
        return found
    looked = ", ".join(str(d) for d in config_dirs())
    raise ConfigError(f"config file not found: {path} (looked in ., {looked})")


def base_config() -> DictConfig:
    """Every stage's defaults: `configs/base/<section>.yaml` holds the `<section>:` key of one stage.

    The package's files first, then a project's `configs/base/*.yaml` (from `taskseed init`) over them.
    """
    files = [f for base_dir in reversed(config_dirs()) for f in sorted((base_dir / "base").glob("*.yaml"))]
    if not files:
        raise ConfigError(f"no stage defaults found under {packaged_configs_dir() / 'base'}: a broken install?")
    # Parsed once per process and file state (a config is loaded per step, per arm, per test): a
    # copy each call, since callers change what they get.
    stats = tuple((str(f), st.st_mtime_ns, st.st_size) for f in files for st in [f.stat()])
    return copy.deepcopy(_merged_base(stats))


@functools.lru_cache(maxsize=8)
def _merged_base(stats: tuple[tuple[str, int, int], ...]) -> DictConfig:
    parts = []
    for name, _, _ in stats:
        part = OmegaConf.load(name)
        if set(part.keys()) != {Path(name).stem}:
            raise ConfigError(f"{name}: must hold exactly one top-level key, {Path(name).stem!r}")
        parts.append(part)
    return OmegaConf.merge(*parts)


# Maps whose keys are data, not settings (dataset paths, task names, benchmark names): any key is
# accepted below these. Empty maps in configs/base (`{}`) are open the same way.
OPEN_MAPS = ("catalog.split_overrides", "catalog.licenses", "eval.benchmarks")


def unknown_keys(base: Any, user: Any, prefix: str = "") -> list[tuple[str, list[str]]]:
    """(dotted key, its known siblings) for every key of `user` that `base` does not have.

    A typo in a key would otherwise be merged in silently and never read (`generate.chunk_size=4`
    after the key was renamed): the run would go ahead with the default the user meant to change.
    """
    out: list[tuple[str, list[str]]] = []
    if not isinstance(base, dict) or not isinstance(user, dict) or not base or prefix.rstrip(".") in OPEN_MAPS:
        return out
    for key, value in user.items():
        path = f"{prefix}{key}"
        if key not in base:
            out.append((path, [str(k) for k in base]))
        elif isinstance(base[key], dict) and isinstance(value, dict):
            out.extend(unknown_keys(base[key], value, f"{path}."))
    return out


def known_keys(base: DictConfig | None = None) -> dict[str, Any]:
    """Every key a config may set: the stage defaults (`base`, read if not given) plus what the
    training presets (`configs/recipes/*.yaml`, layered between the defaults and the user's file)
    define, as a plain dict."""
    presets = [OmegaConf.load(f) for f in config_files("recipes")]
    return OmegaConf.to_container(OmegaConf.merge(base if base is not None else base_config(), *presets))


def _check_known(known: dict[str, Any], user: DictConfig, where: str) -> None:
    import difflib

    unknown = unknown_keys(known, OmegaConf.to_container(user))
    if unknown:
        lines = []
        for path, siblings in unknown:
            close = difflib.get_close_matches(path.rsplit(".", 1)[-1], siblings, n=3, cutoff=0.5)
            lines.append(f"{path}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise ConfigError(
            f"{where}: unknown key(s) {'; '.join(lines)}. The keys and their defaults are in "
            f"configs/base/<section>.yaml"
        )


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> DictConfig:
    """Stage defaults from `configs/base/`, then the user's file, then `key=value` overrides.

    A user file only names what it changes (see `configs/default.yaml`).
    """
    cfg = base_config()
    # Built from the defaults just read, only when there is something to check against it.
    known = known_keys(cfg) if path is not None or overrides else {}
    if path is not None:
        user_path = resolve_config_path(path)
        try:
            user = OmegaConf.load(user_path)
            cfg = OmegaConf.merge(cfg, user)
        except Exception as exc:  # OmegaConf raises several types; all mean "this file is bad"
            raise ConfigError(f"{user_path}: {exc}") from exc
        _check_known(known, user, str(user_path))
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must be key=value, got: {' '.join(bad)}")
        try:
            dotlist = OmegaConf.from_dotlist(list(overrides))
            cfg = OmegaConf.merge(cfg, dotlist)
        except Exception as exc:
            raise ConfigError(f"bad override {overrides}: {exc}") from exc
        _check_known(known, dotlist, "override")
    return cfg


def to_container(cfg: DictConfig | dict | Any) -> Any:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def section_settings(
    cls: type | None,
    cfg: Any,
    section: str,
    names: Iterable[str] | None = None,
    *,
    strict: bool = False,
    extra: Iterable[str] = (),
) -> dict[str, Any]:
    """The values of dataclass `cls`'s fields (or of the keys `names`) from config section `section`.

    `section` is a dotted path (`generate`, `filter.verify.vote`); `cfg` is the full config or the
    section itself. Defaults live in `configs/base/*.yaml` only: a field the config does not set is
    an error naming the key, never a second default written in code. `strict`: a key of the
    section that is neither read nor in `extra` (a typo in a dict built in code) is an error too.
    """
    import dataclasses

    data = to_container(cfg) or {}
    path = section.split(".")
    if isinstance(data, dict) and isinstance(data.get(path[0]), dict):
        for key in path:
            data = data.get(key) if isinstance(data, dict) else None
        if not isinstance(data, dict):
            raise ConfigError(f"config has no section {section} (configs/base sets it)")
    wanted = list(names) if names is not None else [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(wanted) - set(extra)) if strict else []
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {unknown}; known: {sorted(set(wanted) | set(extra))}")
    missing = [name for name in wanted if name not in data]
    if missing:
        keys = ", ".join(f"{section}.{m}" for m in missing)
        raise ConfigError(f"config is missing {keys} (configs/base/{path[0]}.yaml sets the defaults)")
    return {name: data[name] for name in wanted}
