"""Known vulnerabilities of an image: its inventory matched against the stored advisories."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from pydantic import ValidationError

from bot.db import Database
from bot.findings import Finding
from bot.images import ImageFacts
from bot.inventory import inventory
from bot.layers import os_release
from bot.store import advisories
from bot.vulns.match import Package, match, to_finding
from bot.vulns.osv import OsvRecord, parse_record
from bot.vulns.versions import base_ecosystem


def packages_of(facts: ImageFacts) -> list[Package]:
    """Every platform's installed packages, each once."""
    found: dict[tuple[str, str, str, str | None], Package] = {}
    for platform in facts.platforms:
        if platform.filesystem is None:
            continue
        for p in inventory(platform.filesystem, os_release(platform.filesystem)):
            found.setdefault((p.ecosystem, p.name, p.version, p.distro), p)
    return list(found.values())


class Vulnerabilities:
    def __init__(self, db: Database, cache_size: int = 100_000) -> None:
        self._db = db
        #: Parsed advisories by id, with the raw JSON they came from: parsing dominates a
        #: match, and a record only changes when a re-import rewrites it.
        self._parsed: dict[str, tuple[str, OsvRecord]] = {}
        self._cache_size = cache_size

    async def findings(self, packages: Sequence[Package]) -> list[Finding]:
        """One finding per (vulnerability, package), from the advisories known now."""
        if not packages:
            return []
        by_ecosystem: dict[str, set[str]] = defaultdict(set)
        for p in packages:
            by_ecosystem[base_ecosystem(p.target)].add(p.name)
        rows: dict[str, str] = {}
        async with self._db.transaction() as s:
            for ecosystem, names in by_ecosystem.items():
                rows.update(await advisories.candidate_rows(s, ecosystem, sorted(names)))
        records = [r for r in (self._record(i, raw) for i, raw in sorted(rows.items())) if r]
        return [to_finding(v) for v in match(packages, records)]

    def _record(self, advisory_id: str, raw: str) -> OsvRecord | None:
        cached = self._parsed.get(advisory_id)
        if cached is not None and cached[0] == raw:
            return cached[1]
        try:
            record = parse_record(raw)
        except (ValueError, ValidationError):
            return None
        if len(self._parsed) >= self._cache_size:
            self._parsed.pop(next(iter(self._parsed)))
        self._parsed[advisory_id] = (raw, record)
        return record
