"""Known vulnerabilities of an image: its inventory matched against the stored advisories."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from bot.db import Database
from bot.findings import Finding
from bot.images import ImageFacts
from bot.inventory import inventory
from bot.layers import os_release
from bot.store import advisories
from bot.vulns.match import Package, match, to_finding
from bot.vulns.osv import OsvRecord
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
    def __init__(self, db: Database) -> None:
        self._db = db

    async def findings(self, packages: Sequence[Package]) -> list[Finding]:
        """One finding per (vulnerability, package), from the advisories known now."""
        if not packages:
            return []
        by_ecosystem: dict[str, set[str]] = defaultdict(set)
        for p in packages:
            by_ecosystem[base_ecosystem(p.target)].add(p.name)
        records = []
        async with self._db.transaction() as s:
            for ecosystem, names in by_ecosystem.items():
                records += await advisories.candidates(s, ecosystem, sorted(names))
        return [to_finding(v) for v in match(packages, _unique(records))]


def _unique(records: Iterable[OsvRecord]) -> list[OsvRecord]:
    seen: dict[str, OsvRecord] = {}
    for r in records:
        seen.setdefault(r.id, r)
    return list(seen.values())
