"""What a blend plan is made of: synthetic prefixes (from a tokenize manifest) and the user's
existing pretraining blend (YAML/JSON with weights or token counts, or a Megatron data-args file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from nemo_taskseed.schema.plan import PlanError


@dataclass
class SyntheticPrefix:
    name: str
    prefix: str  # absolute path prefix of <prefix>.bin / <prefix>.idx
    tokens: int
    documents: int
    family: str
    variant: str | None
    kind: str
    group: str
    # multiple_choice | generative when the manifest groups by format (tokenize.group_by), else None.
    format: str | None = None
    # Tokens per record format (the manifest's `format_tokens`; "unknown": records without one).
    # None: not recorded (a manifest older than format_tokens that does not group by format).
    format_tokens: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if self.format_tokens is None and self.format:
            self.format_tokens = {self.format: self.tokens}  # a format grouping: one format per prefix


@dataclass
class ExistingEntry:
    name: str
    prefix: str
    weight: float | None  # share of the pretraining part, as given
    tokens: int | None  # tokens available in the dataset (given, or read from its .idx)
    where: str  # "file: datasets[i]" for error messages


def prefix_exists(prefix: str) -> bool:
    return Path(f"{prefix}.bin").is_file() and Path(f"{prefix}.idx").is_file()


def count_prefix_tokens(prefix: str) -> tuple[int, int]:
    """(documents, tokens) of a local Megatron prefix, from its .idx only (the .bin is not read)."""
    from nemo_taskseed.tokenize.megatron import megatron_datasets

    dataset = megatron_datasets().IndexedDataset(prefix)
    lengths = np.asarray(dataset.sequence_lengths, dtype=np.int64)
    return len(dataset.document_indices) - 1, int(lengths.sum())


def synthetic_prefixes_from_manifest(
    manifest: dict, root: Path, group_key: str = "kind", manifest_path: str = "manifest.json"
) -> list[SyntheticPrefix]:
    prefixes = []
    for i, entry in enumerate(manifest.get("prefixes", [])):
        where = f"{manifest_path}: prefixes[{i}] ({entry.get('name')})"
        prefix = str((Path(root) / entry["path"]).resolve())
        if not prefix_exists(prefix):
            raise PlanError(f"{where}: prefix {prefix} does not exist (.bin/.idx missing); re-run `taskseed tokenize`")
        if int(entry.get("tokens", 0)) <= 0:
            raise PlanError(f"{where}: zero-token dataset {prefix}; drop it or fix its input")
        group_values = entry.get("group", {})
        # merge=false manifests list a group's shards as `<group>@<shard>` entries with `group_name`:
        # without a family field, the group (not the shard) is the family, so its shards plan as one.
        family = group_values.get("family", entry.get("group_name", entry["name"]))
        group = entry.get("kind", "unknown") if group_key == "kind" else str(group_values.get(group_key, "all"))
        prefixes.append(
            SyntheticPrefix(
                name=entry["name"],
                prefix=prefix,
                tokens=int(entry["tokens"]),
                documents=int(entry["documents"]),
                family=family,
                variant=group_values.get("variant"),
                kind=entry.get("kind", "unknown"),
                group=group,
                format=group_values.get("format"),
                format_tokens=(
                    {str(k): int(v) for k, v in entry["format_tokens"].items()} if "format_tokens" in entry else None
                ),
            )
        )
    if not prefixes:
        raise PlanError(f"{manifest_path}: the tokenize manifest lists no prefixes")
    return prefixes


def _parse_number(value, where: str, field: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PlanError(f"{where}: {field} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise PlanError(f"{where}: {field} must be finite, got {value!r}")
    return number


def _entries_from_rows(rows: list, source: str, base_dir: Path) -> list[ExistingEntry]:
    entries = []
    for i, row in enumerate(rows):
        where = f"{source}: datasets[{i}]"
        if not isinstance(row, dict) or not row.get("prefix"):
            raise PlanError(f"{where}: each dataset needs a `prefix` (and `weight` or `tokens`)")
        prefix = str(row["prefix"])
        if not Path(prefix).is_absolute() and base_dir is not None:
            prefix = str((base_dir / prefix).resolve()) if (base_dir / f"{prefix}.idx").exists() else prefix
        name = str(row.get("name") or Path(prefix).name)
        where = f"{where} ({name})"
        weight = row.get("weight")
        tokens = row.get("tokens")
        if weight is not None:
            weight = _parse_number(weight, where, "weight")
            if weight <= 0:
                raise PlanError(f"{where}: weight {weight:g} must be > 0 (remove the entry to drop a dataset)")
        if tokens is not None:
            tokens_f = _parse_number(tokens, where, "tokens")
            if tokens_f <= 0:
                raise PlanError(f"{where}: zero-token dataset ({prefix}); remove it from the blend")
            tokens = int(tokens_f)
        entries.append(ExistingEntry(name=name, prefix=prefix, weight=weight, tokens=tokens, where=where))
    return entries


def load_existing_blend(spec, *, base_dir: Path | None = None) -> tuple[str, list[ExistingEntry]]:
    """The user's pretraining blend as entries; `spec` is a path or an inline mapping/list.

    Accepted shapes:
      * YAML/JSON `{name: ..., datasets: [{prefix, weight | tokens, name?}, ...]}`
      * a Megatron data-args text file `w1 p1 w2 p2 ...` (what `--data-args-path` reads)
    """
    if spec is None:
        return "none", []
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.is_file():
            from nemo_taskseed.paths import find_config

            found = find_config(Path("blends") / path)
            if found is not None:
                path = found
            else:
                raise PlanError(f"existing pretraining blend not found: {spec} (also looked in configs/blends/)")
        if path.suffix in {".yaml", ".yml", ".json"}:
            try:
                data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
            except Exception as exc:
                raise PlanError(f"{path}: cannot parse ({exc})") from exc
            return _from_mapping(data, str(path), path.parent)
        words = path.read_text().split()
        if len(words) % 2:
            raise PlanError(f"{path}: a data-args file needs `weight prefix` pairs, got {len(words)} words")
        rows = [{"weight": words[i], "prefix": words[i + 1]} for i in range(0, len(words), 2)]
        return path.stem, _entries_from_rows(rows, str(path), path.parent)
    data = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec
    return _from_mapping(data, "blend.existing", base_dir)


def _from_mapping(data, source: str, base_dir: Path | None) -> tuple[str, list[ExistingEntry]]:
    if isinstance(data, list):
        data = {"datasets": data}
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), list) or not data["datasets"]:
        raise PlanError(f"{source}: expected a mapping with a non-empty `datasets:` list")
    return str(data.get("name") or Path(source).stem), _entries_from_rows(data["datasets"], source, base_dir)
