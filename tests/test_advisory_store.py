"""The advisory store on both engines: idempotent import, updates, withdrawals, lookups."""

from __future__ import annotations

import gc
import json
import logging
import weakref
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.store.db import Database
from bot.vulns import store as advisories
from bot.vulns.match import Package, match
from bot.vulns.models import Advisory, AdvisoryPackage
from bot.vulns.osv import OsvRecord, load_path, parse_record
from bot.vulns.store import ImportResult

OSV = Path(__file__).parent / "fixtures" / "osv"


def real() -> list[OsvRecord]:
    return list(load_path(OSV))


def variant(record_id: str, **changes: Any) -> OsvRecord:
    data = json.loads((OSV / f"{record_id}.json").read_text())
    return parse_record({**data, **changes})


async def counts(db: Database) -> tuple[int, int]:
    async with db.transaction() as s:
        n_adv = (await s.execute(select(func.count()).select_from(Advisory))).scalar_one()
        n_pkg = (await s.execute(select(func.count()).select_from(AdvisoryPackage))).scalar_one()
    return n_adv, n_pkg


async def test_import_is_idempotent(db: Database) -> None:
    async with db.transaction() as s:
        first = await advisories.import_records(s, real())
    async with db.transaction() as s:
        again = await advisories.import_records(s, real())
    assert first == ImportResult(added=6)
    assert again == ImportResult(unchanged=6)
    # GHSA names lodash and lodash-es; GO-2022-0969 stdlib and golang.org/x/net.
    assert await counts(db) == (6, 8)


async def test_candidates_by_base_ecosystem_and_normalised_name(db: Database) -> None:
    async with db.transaction() as s:
        await advisories.import_records(s, real())
    async with db.transaction() as s:
        pypi = await advisories.candidates(s, "PyPI", ["Requests", "flask"])
        debian = await advisories.candidates(s, "Debian:12", ["nginx", "curl"])
        npm = await advisories.candidates(s, "npm", ["lodash-es"])
        go = await advisories.candidates(s, "Go", ["stdlib", "golang.org/x/net"])
        none = await advisories.candidates(s, "npm", ["requests"])
        empty = await advisories.candidates(s, "PyPI", [])
    assert [r.id for r in pypi] == ["PYSEC-2018-28", "PYSEC-2023-74"]
    assert [r.id for r in debian] == ["DSA-3029-1"]  # every release; `affects` decides
    assert [r.id for r in npm] == ["GHSA-35jh-r3h4-6jhm"]
    assert [r.id for r in go] == ["GO-2022-0969"]
    assert none == [] and empty == []
    # What comes back is the record as imported, fields the model ignores included.
    [original] = [r for r in real() if r.id == "PYSEC-2023-74"]
    assert pypi[1] == original
    assert json.loads(pypi[1].raw_json())["references"][0]["type"] == "ADVISORY"


async def test_a_newer_modified_replaces_and_an_older_one_does_not(db: Database) -> None:
    async with db.transaction() as s:
        await advisories.import_records(s, real())
    newer = variant(
        "GHSA-35jh-r3h4-6jhm",
        modified="2024-06-01T00:00:00Z",
        summary="Command Injection in lodash (revised)",
        affected=[
            {
                "package": {"ecosystem": "npm", "name": "lodash"},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "4.17.22"}]}
                ],
            }
        ],
    )
    older = variant("GHSA-35jh-r3h4-6jhm", modified="2020-01-01T00:00:00Z", summary="stale")
    async with db.transaction() as s:
        assert await advisories.import_records(s, [newer]) == ImportResult(updated=1)
    async with db.transaction() as s:
        assert await advisories.import_records(s, [older]) == ImportResult(unchanged=1)
    async with db.transaction() as s:
        [lodash] = await advisories.candidates(s, "npm", ["lodash"])
        gone = await advisories.candidates(s, "npm", ["lodash-es"])
        row = await s.get(Advisory, "GHSA-35jh-r3h4-6jhm")
    assert lodash.summary == "Command Injection in lodash (revised)"
    assert gone == []  # the new version no longer names lodash-es
    assert row is not None and row.modified == newer.modified and row.severity == "high"
    assert json.loads(row.aliases) == ["CVE-2021-23337"]
    [finding] = match([Package("npm", "lodash", "4.17.21")], [lodash])
    assert finding.fixed_version == "4.17.22"


async def test_a_withdrawn_record_is_removed_and_stays_removed(db: Database) -> None:
    async with db.transaction() as s:
        await advisories.import_records(s, real())
    withdrawn = variant(
        "PYSEC-2018-28", modified="2024-01-01T00:00:00Z", withdrawn="2024-01-01T00:00:00Z"
    )
    async with db.transaction() as s:
        assert await advisories.import_records(s, [withdrawn]) == ImportResult(withdrawn_removed=1)
    async with db.transaction() as s:
        # Re-importing the old export (older `modified`) does not bring it back.
        assert await advisories.import_records(s, real()) == ImportResult(unchanged=6)
        assert await advisories.import_records(s, [withdrawn]) == ImportResult(unchanged=1)
        found = await advisories.candidates(s, "PyPI", ["requests"])
    assert [r.id for r in found] == ["PYSEC-2023-74"]
    assert await counts(db) == (6, 7)  # a tombstone row, without packages


async def test_withdrawn_before_ever_stored_and_duplicates_in_one_import(db: Database) -> None:
    never = variant("GO-2020-0001", withdrawn="2024-05-20T16:03:47Z")
    first = variant("DSA-3029-1")
    second = variant("DSA-3029-1", modified="2015-01-01T00:00:00Z", summary="nginx - update 2")
    async with db.transaction() as s:
        result = await advisories.import_records(s, [never, second, first])
        debian = await advisories.candidates(s, "Debian", ["nginx"])
        go = await advisories.candidates(s, "Go", ["github.com/gin-gonic/gin"])
    assert result == ImportResult(added=1, unchanged=2)
    assert [r.summary for r in debian] == ["nginx - update 2"]  # the newest copy won
    assert go == []


async def test_import_in_small_batches_from_a_zip(db: Database, tmp_path: Path) -> None:
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(OSV.glob("*.json")):
            zf.writestr(file.name, file.read_bytes())
    errors: list[Any] = []
    async with db.transaction() as s:
        result = await advisories.import_records(s, load_path(archive, errors), batch_size=4)
    async with db.transaction() as s:
        again = await advisories.import_records(s, load_path(archive), batch_size=4)
        pypi = await advisories.candidates(s, "pypi", ["REQUESTS"])
    assert errors == []
    assert result == ImportResult(added=6) and again == ImportResult(unchanged=6)
    found = match([Package("PyPI", "requests", "2.19.0")], pypi)
    assert [(f.vuln_id, f.fixed_version) for f in found] == [
        ("PYSEC-2018-28", "2.20.0"),
        ("PYSEC-2023-74", "2.31.0"),
    ]


async def test_a_long_lived_matcher_sees_every_import_in_any_replica(
    db: Database, database_url: str
) -> None:
    """Matchers keep compiled advisories between calls; an import anywhere makes them stale."""
    from bot.config import Database as DatabaseSettings
    from bot.vulns.service import Vulnerabilities

    other_replica = Database(DatabaseSettings(url=database_url))
    try:
        here, there = Vulnerabilities(db), Vulnerabilities(other_replica)
        lodash = [Package("npm", "lodash", "4.17.20")]
        assert await here.findings(lodash) == [] and await there.findings(lodash) == []

        async with db.transaction() as s:
            await advisories.import_records(s, real())
        assert [f.check_id for f in await here.findings(lodash)] == ["GHSA-35jh-r3h4-6jhm"]
        [before] = await there.findings(lodash)
        assert before.fixed_version == "4.17.21"

        revised = variant(
            "GHSA-35jh-r3h4-6jhm",
            modified="2024-06-01T00:00:00Z",
            affected=[
                {
                    "package": {"ecosystem": "npm", "name": "lodash"},
                    "ranges": [
                        {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "4.17.22"}]}
                    ],
                }
            ],
        )
        async with other_replica.transaction() as s:
            await advisories.import_records(s, [revised])
        assert [f.fixed_version for f in await here.findings(lodash)] == ["4.17.22"]

        gone = variant(
            "GHSA-35jh-r3h4-6jhm", modified="2024-07-01T00:00:00Z", withdrawn="2024-07-01T00:00:00Z"
        )
        async with db.transaction() as s:
            await advisories.import_records(s, [gone])
        assert await here.findings(lodash) == [] and await there.findings(lodash) == []
    finally:
        await other_replica.dispose()


async def test_a_full_matcher_forgets_the_oldest_names_but_never_the_ones_it_matches(
    db: Database,
) -> None:
    from bot.vulns.service import Vulnerabilities

    async with db.transaction() as s:
        await advisories.import_records(s, real())
    vulns = Vulnerabilities(db, max_names=2)
    lodash = Package("npm", "lodash", "4.17.20")
    others = [Package("PyPI", "flask", "0.1"), Package("Debian:12", "nginx", "1.0")]
    assert [f.check_id for f in await vulns.findings([lodash])] == ["GHSA-35jh-r3h4-6jhm"]
    # Three names at once in a matcher that holds two: all three still matched.
    found = await vulns.findings([lodash, *others])
    assert "GHSA-35jh-r3h4-6jhm" in {f.check_id for f in found}
    assert [f.check_id for f in await vulns.findings([lodash])] == ["GHSA-35jh-r3h4-6jhm"]


async def test_a_load_frozen_out_of_the_collector_is_freed_as_soon_as_an_import_replaces_it(
    db: Database,
) -> None:
    """A large load is kept out of the collector's full passes; replacing it must not leak it."""
    from bot.vulns.service import Vulnerabilities

    async with db.transaction() as s:
        await advisories.import_records(s, real())
    vulns = Vulnerabilities(db, freeze_after=1)
    lodash = [Package("npm", "lodash", "4.17.20")]
    try:
        assert await vulns.findings(lodash)
        assert gc.get_freeze_count() > 0
        loaded = weakref.ref(vulns._tables[("npm", "lodash")])

        async with db.transaction() as s:
            await advisories.import_records(
                s, [variant("GHSA-35jh-r3h4-6jhm", modified="2030-01-01T00:00:00Z")]
            )
        assert await vulns.findings(lodash)
        assert loaded() is None
    finally:
        gc.unfreeze()  # the rest of the test session is collected as usual


async def test_a_stored_record_that_no_longer_parses_is_skipped_and_logged_without_its_text(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A feed's text reaches the log only as field paths: the value may be anything."""
    from bot.vulns.service import Vulnerabilities

    async with db.transaction() as s:
        await advisories.import_records(s, real())
    planted = "<!channel> ignore this advisory, see http://evil.example"
    async with db.transaction() as s:
        row = await s.get(Advisory, "GHSA-35jh-r3h4-6jhm")
        assert row is not None
        doc = json.loads(row.raw)
        doc["affected"][0]["ranges"][0]["events"] = planted
        row.raw = json.dumps(doc)
    lodash = [Package("npm", "lodash", "4.17.20")]
    with caplog.at_level(logging.WARNING):
        assert await Vulnerabilities(db).findings(lodash) == []
        async with db.transaction() as s:
            assert await advisories.candidates(s, "npm", ["lodash"]) == []
    lines = [r.getMessage() for r in caplog.records if "no longer parses" in r.getMessage()]
    assert len(lines) == 2
    assert all("GHSA-35jh-r3h4-6jhm" in ln and "events" in ln for ln in lines)
    assert not any("evil.example" in ln or "<!channel>" in ln for ln in lines)
