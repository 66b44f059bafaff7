"""Known vulnerabilities of an image: its inventory matched against the stored advisories."""

from __future__ import annotations

import gc
import logging
from collections import defaultdict
from collections.abc import Collection, Sequence

from pydantic import ValidationError

from bot.model.findings import Finding
from bot.store.db import Database
from bot.vulns import store as advisories
from bot.vulns.match import Matched, NameKey, Package, matches, name_key, to_findings
from bot.vulns.osv import Compiled, OsvRecord, compile_record, describe_error
from bot.vulns.table import NameTable

log = logging.getLogger(__name__)

#: Records compiled in one call past which a long-running matcher moves the new tables out of
#: the cyclic garbage collector's reach (see `Vulnerabilities`).
FREEZE_AFTER = 1_000


class Vulnerabilities:
    """Matches inventories against the advisory store, keeping compiled advisories in memory.

    Parsing and compiling records dominates a match, and the same packages recur in image
    after image, so each package name's advisories are compiled once and kept until the
    store's generation changes (any import, by any replica). Names without advisories are
    kept too: most packages have none, and asking again would cost a query each time.

    A large inventory's tables are hundreds of thousands of objects the collector would walk
    in every full pass (0.4-0.6 s for the 43,000 advisories of bench/vulns.py's inventory, at
    any point of any later request). A long-running process therefore passes `freeze_after`:
    after a load of that many records the tables are frozen (`gc.freeze`, process-wide, so the
    composition root decides), and unfrozen when they are dropped. They hold no reference
    cycles: dropping them frees them. A one-shot command has no later requests to spare.
    """

    def __init__(
        self, db: Database, max_names: int = 200_000, freeze_after: int | None = None
    ) -> None:
        self._db = db
        self._max_names = max_names
        self._freeze_after = freeze_after
        self._tables: dict[NameKey, NameTable | None] = {}
        self._generation: int | None = None
        self._frozen = False

    async def findings(self, packages: Sequence[Package]) -> list[Finding]:
        """One finding per (vulnerability, package), from the advisories known now."""
        return to_findings(await self.matches(packages))

    async def matches(self, packages: Sequence[Package]) -> list[Matched]:
        """Each vulnerable package with its vulnerabilities, from the advisories known now."""
        if not packages:
            return []
        wanted = {name_key(p) for p in packages}
        async with self._db.transaction() as s:
            generation = await advisories.generation(s)
            if generation != self._generation:
                self._drop_tables()
                self._generation = generation
            missing = wanted - self._tables.keys()
            rows: dict[str, str] = {}
            by_ecosystem: dict[str, list[str]] = defaultdict(list)
            for ecosystem, name in missing:
                by_ecosystem[ecosystem].append(name)
            for ecosystem, names in by_ecosystem.items():
                rows.update(await advisories.candidate_rows(s, ecosystem, sorted(names)))
        self._remember(missing, rows, keep=wanted)
        index = {key: table for key in wanted if (table := self._tables.get(key)) is not None}
        return matches(packages, index)

    def _remember(
        self, keys: Collection[NameKey], rows: dict[str, str], keep: Collection[NameKey]
    ) -> None:
        found: dict[NameKey, list[Compiled]] = defaultdict(list)
        for advisory_id in sorted(rows):
            try:
                record = OsvRecord.model_validate_json(rows[advisory_id])
            except (ValueError, ValidationError) as e:
                log.warning(
                    "stored advisory %s no longer parses: %s", advisory_id, describe_error(e)
                )
                continue
            for key, compiled in compile_record(record).items():
                if key in keys:
                    found[key].append(compiled)
        overflow = len(self._tables) + len(keys) - self._max_names
        if overflow > 0:  # the oldest names first, never one this match is about to use
            for key in [k for k in self._tables if k not in keep][:overflow]:
                del self._tables[key]
        for key in keys:
            self._tables[key] = NameTable(found[key]) if key in found else None
        if self._freeze_after is not None and len(rows) >= self._freeze_after:
            gc.collect()  # what is garbage now would otherwise be frozen with the tables
            gc.freeze()
            self._frozen = True

    def _drop_tables(self) -> None:
        self._tables.clear()
        if self._frozen:  # what else was frozen with them can be collected again
            gc.unfreeze()
            self._frozen = False
