"""OmegaConf configs: YAML files under `configs/`, overridden by `key=value` dot-lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nemo_taskseed.errors import UserError
from nemo_taskseed.paths import repo_configs_dir


class ConfigError(UserError):
    """A config file or override that cannot be used; the message names the file and key."""


def resolve_config_path(path: str | Path) -> Path:
    """Accept a path, or a name under `configs/` (with or without `.yaml`)."""
    p = Path(path)
    if p.is_file():
        return p
    for candidate in (repo_configs_dir() / p, repo_configs_dir() / f"{p}.yaml"):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"config file not found: {path} (looked in . and {repo_configs_dir()})")


def base_config() -> DictConfig:
    """Every stage's defaults: `configs/base/<section>.yaml` holds the `<section>:` key of one stage."""
    base_dir = repo_configs_dir() / "base"
    parts = []
    for f in sorted(base_dir.glob("*.yaml")):
        part = OmegaConf.load(f)
        if set(part.keys()) != {f.stem}:
            raise ConfigError(f"{f}: must hold exactly one top-level key, {f.stem!r}")
        parts.append(part)
    return OmegaConf.merge(*parts) if parts else OmegaConf.create({})


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> DictConfig:
    """Stage defaults from `configs/base/`, then the user's file, then `key=value` overrides.

    A user file only names what it changes (see `configs/default.yaml`).
    """
    cfg = base_config()
    if path is not None:
        user_path = resolve_config_path(path)
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.load(user_path))
        except Exception as exc:  # OmegaConf raises several types; all mean "this file is bad"
            raise ConfigError(f"{user_path}: {exc}") from exc
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must be key=value, got: {' '.join(bad)}")
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        except Exception as exc:
            raise ConfigError(f"bad override {overrides}: {exc}") from exc
    return cfg


def to_container(cfg: DictConfig | dict | Any) -> Any:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def section_settings(cls: type, cfg: Any, section: str) -> dict[str, Any]:
    """The values of dataclass `cls`'s fields from config section `section`.

    `cfg` is the full config or the section itself. Defaults live in `configs/base/<section>.yaml`
    only: a field the config does not set is an error naming the key, never a second default
    written in code.
    """
    import dataclasses

    data = to_container(cfg) or {}
    if isinstance(data, dict) and isinstance(data.get(section), dict):
        data = data[section]
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in data]
    if missing:
        keys = ", ".join(f"{section}.{m}" for m in missing)
        raise ConfigError(f"config is missing {keys} (configs/base/{section}.yaml sets the defaults)")
    return {f.name: data[f.name] for f in dataclasses.fields(cls)}
