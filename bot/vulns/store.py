"""OSV advisories: idempotent import of records, and the candidates for a set of packages."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store._upsert import insert
from bot.vulns.models import Advisory, AdvisoryPackage, VulndbState
from bot.vulns.osv import (
    OsvRecord,
    describe_error,
    normalize_name,
    parse_record,
    severity_of,
    summary_of,
)
from bot.vulns.versions import base_ecosystem

log = logging.getLogger(__name__)

#: Records per round trip; also bounds the `IN (…)` lists (SQLite allows 32766 parameters).
BATCH = 500


@dataclass(frozen=True)
class ImportResult:
    """What one import did. Every record given is counted exactly once."""

    added: int = 0
    updated: int = 0
    #: Already stored at this `modified` or newer, a duplicate, or withdrawn and never stored.
    unchanged: int = 0
    #: Stored records that this import found withdrawn: they no longer match anything.
    withdrawn_removed: int = 0

    def __add__(self, other: ImportResult) -> ImportResult:
        return ImportResult(
            self.added + other.added,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.withdrawn_removed + other.withdrawn_removed,
        )


def _batches(records: Iterable[OsvRecord], size: int) -> Iterator[list[OsvRecord]]:
    it = iter(records)
    while batch := list(islice(it, size)):
        yield batch


def _row(record: OsvRecord) -> dict[str, Any]:
    severities = [severity_of(record, entry) for entry in record.affected] or [severity_of(record)]
    return {
        "id": record.id,
        "modified": record.modified,
        "withdrawn": record.withdrawn,
        "summary": summary_of(record),
        "aliases": json.dumps(list(record.aliases)),
        "severity": str(max(severities, key=lambda s: s.rank)),
        "raw": record.raw_json(),
    }


def _package_rows(record: OsvRecord) -> list[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    for entry in record.affected:
        if entry.package is not None and entry.package.name.strip():
            eco = entry.package.ecosystem
            seen.add((base_ecosystem(eco), normalize_name(eco, entry.package.name)))
    return [{"advisory_id": record.id, "ecosystem": e, "name": n} for e, n in sorted(seen)]


async def _import_batch(session: AsyncSession, batch: list[OsvRecord]) -> ImportResult:
    newest: dict[str, OsvRecord] = {}
    duplicates = 0
    for record in batch:
        kept = newest.get(record.id)
        if kept is not None:
            duplicates += 1
            if record.modified < kept.modified:
                continue
        newest[record.id] = record

    rows = await session.execute(
        select(Advisory.id, Advisory.modified, Advisory.withdrawn).where(
            Advisory.id.in_(list(newest))
        )
    )
    stored: dict[str, tuple[datetime, datetime | None]] = {
        r.id: (r.modified, r.withdrawn) for r in rows
    }

    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    packages: list[dict[str, Any]] = []
    added = updated = unchanged = removed = 0
    for record in newest.values():
        before = stored.get(record.id)
        if before is None:
            inserts.append(_row(record))
            if record.withdrawn is None:
                packages += _package_rows(record)
                added += 1
            else:
                unchanged += 1  # kept as a tombstone, so an older copy cannot come back
            continue
        modified, withdrawn = before
        if record.modified <= modified:
            unchanged += 1
            continue
        updates.append(_row(record))
        if record.withdrawn is None:
            packages += _package_rows(record)
            updated += 1
        elif withdrawn is None:
            removed += 1
        else:
            unchanged += 1

    if updates:
        await session.execute(
            delete(AdvisoryPackage)
            .where(AdvisoryPackage.advisory_id.in_([u["id"] for u in updates]))
            .execution_options(synchronize_session=False)
        )
        await session.execute(update(Advisory), updates)
    if inserts:
        await session.execute(insert(session, Advisory).on_conflict_do_nothing(), inserts)
    if packages:
        await session.execute(insert(session, AdvisoryPackage).on_conflict_do_nothing(), packages)
    return ImportResult(added, updated, unchanged + duplicates, removed)


async def import_records(
    session: AsyncSession, records: Iterable[OsvRecord], batch_size: int = BATCH
) -> ImportResult:
    """Store records (e.g. from `bot.vulns.osv.load_path`), batch by batch.

    Idempotent: a record already stored at the same (or a newer) `modified` is left alone, a
    newer one replaces it and its packages, and a withdrawn one keeps only a tombstone row
    (`withdrawn` set, no packages) so `candidates` never returns it again.
    """
    total = ImportResult()
    for batch in _batches(records, batch_size):
        total += await _import_batch(session, batch)
    if total.added or total.updated or total.withdrawn_removed:
        await session.execute(update(VulndbState).values(generation=VulndbState.generation + 1))
    return total


async def generation(session: AsyncSession) -> int:
    """Bumped by every import that changed the store: what was compiled before is stale."""
    value = await session.scalar(select(VulndbState.generation).where(VulndbState.id == 1))
    return int(value or 0)


async def candidate_rows(
    session: AsyncSession, ecosystem: str, names: Sequence[str]
) -> list[tuple[str, str]]:
    """(id, raw JSON) of live records naming any of `names` in the base ecosystem, by id."""
    base = base_ecosystem(ecosystem)
    wanted = sorted({normalize_name(ecosystem, n) for n in names if n.strip()})
    found: dict[str, str] = {}
    for i in range(0, len(wanted), BATCH):
        ids = (
            select(AdvisoryPackage.advisory_id)
            .where(AdvisoryPackage.ecosystem == base)
            .where(AdvisoryPackage.name.in_(wanted[i : i + BATCH]))
        )
        rows = await session.execute(
            select(Advisory.id, Advisory.raw).where(
                Advisory.id.in_(ids), Advisory.withdrawn.is_(None)
            )
        )
        for advisory_id, raw in rows:
            found.setdefault(advisory_id, raw)
    return sorted(found.items())


async def candidates(
    session: AsyncSession, ecosystem: str, names: Sequence[str]
) -> list[OsvRecord]:
    """Live records naming any of `names` in `ecosystem`'s base ecosystem, ordered by id.

    The release is not filtered here (`Debian:12` finds every Debian record for the name);
    `bot.vulns.osv.affects` decides per release and version.
    """
    records = []
    for advisory_id, raw in await candidate_rows(session, ecosystem, names):
        try:
            records.append(parse_record(raw))
        except (ValueError, ValidationError) as e:
            log.warning("stored advisory %s no longer parses: %s", advisory_id, describe_error(e))
    return records
