"""The inbox, images and the Slack outbox on both engines: SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.model.findings import Finding, Severity
from bot.store import cluster, images, inbox, outbox
from bot.store.db import Database
from bot.store.models import ImagePackage
from bot.vulns.match import Package

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
DIGEST = "sha256:" + "ab" * 32
MAX = 5  # [worker] max_attempts


def _events(*keys: str) -> list[inbox.NewEvent]:
    return [inbox.NewEvent("local", k, "image.pushed", f'{{"k": "{k}"}}') for k in keys]


async def test_redelivered_event_is_stored_once(db: Database) -> None:
    async with db.transaction() as s:
        first = await inbox.add(s, _events("a", "b"), NOW)
    async with db.transaction() as s:
        second = await inbox.add(s, _events("b", "c"), NOW)
        counts = await inbox.counts(s)
    assert first == {("local", "a"), ("local", "b")}
    assert second == {("local", "c")}
    assert counts == {"pending": 3}


async def test_the_intakes_own_write_commits_dedups_and_stores_what_a_session_reads(
    db: Database,
) -> None:
    first = await inbox.add_committed(db.engine, _events("a", "b"), NOW)
    async with db.transaction() as s:  # redelivered through the session path: still once
        assert await inbox.add(s, _events("b"), NOW) == set()
    second = await inbox.add_committed(db.engine, _events("b", "c"), NOW)
    async with db.transaction() as s:
        # Stamped as the ORM stamps: due at NOW exactly, not a microsecond before.
        early = await inbox.claim(
            s, NOW - timedelta(microseconds=1), LEASE, limit=10, max_attempts=MAX
        )
        claimed = await inbox.claim(s, NOW, LEASE, limit=10, max_attempts=MAX)
        counts = await inbox.counts(s)
    assert first == {("local", "a"), ("local", "b")}
    assert second == {("local", "c")}
    assert early == []
    assert [c.payload for c in claimed] == ['{"k": "a"}', '{"k": "b"}', '{"k": "c"}']
    assert counts == {"processing": 3}


async def test_claims_oldest_first_and_never_twice(db: Database) -> None:
    async with db.transaction() as s:
        await inbox.add(s, _events("a", "b", "c"), NOW)
    async with db.transaction() as s:
        one = await inbox.claim(s, NOW, LEASE, limit=2, max_attempts=MAX)
    async with db.transaction() as s:
        two = await inbox.claim(s, NOW, LEASE, limit=2, max_attempts=MAX)
    assert [c.payload for c in one] == ['{"k": "a"}', '{"k": "b"}']
    assert [c.payload for c in two] == ['{"k": "c"}']
    assert all(c.attempts == 1 for c in one + two)


async def test_concurrent_claimers_split_the_work(db: Database) -> None:
    async with db.transaction() as s:
        await inbox.add(s, _events(*[str(i) for i in range(40)]), NOW)

    async def claimer() -> list[int]:
        got = []
        while True:
            async with db.transaction() as s:
                claimed = await inbox.claim(s, NOW, LEASE, limit=3, max_attempts=MAX)
            if not claimed:
                return got
            got += [c.id for c in claimed]

    results = await asyncio.gather(*(claimer() for _ in range(4)))
    ids = [i for r in results for i in r]
    assert len(ids) == 40 and len(set(ids)) == 40


async def test_expired_lease_is_taken_over_and_the_old_worker_cannot_finish(db: Database) -> None:
    async with db.transaction() as s:
        await inbox.add(s, _events("a"), NOW)
    async with db.transaction() as s:
        [old] = await inbox.claim(s, NOW, LEASE, max_attempts=MAX)
    async with db.transaction() as s:
        assert await inbox.claim(s, NOW + LEASE / 2, LEASE, max_attempts=MAX) == []
    async with db.transaction() as s:
        [new] = await inbox.claim(s, NOW + LEASE * 2, LEASE, max_attempts=MAX)
    assert new.id == old.id and new.attempts == 2
    with pytest.raises(inbox.LeaseLost):
        async with db.transaction() as s:
            await inbox.finish(s, old, NOW)
    async with db.transaction() as s:
        await inbox.finish(s, new, NOW)
        assert await inbox.counts(s) == {"done": 1}


async def test_retry_waits_for_its_time_and_park_keeps_the_error(db: Database) -> None:
    async with db.transaction() as s:
        await inbox.add(s, _events("a"), NOW)
        [c] = await inbox.claim(s, NOW, LEASE, max_attempts=MAX)
        await inbox.retry_later(s, c, "RegistryError: timeout", NOW + timedelta(seconds=10))
    async with db.transaction() as s:
        assert await inbox.claim(s, NOW + timedelta(seconds=5), LEASE, max_attempts=MAX) == []
        [c] = await inbox.claim(s, NOW + timedelta(seconds=11), LEASE, max_attempts=MAX)
        await inbox.park(s, c, "PermanentError: manifest unknown", NOW)
    async with db.transaction() as s:
        [row] = await inbox.failed(s)
        assert (row.attempts, row.last_error) == (2, "PermanentError: manifest unknown")
        assert await inbox.requeue_failed(s, NOW) == 1
        assert await inbox.counts(s) == {"pending": 1}


async def test_crash_recovery_releases_every_claim(db: Database) -> None:
    async with db.transaction() as s:
        await inbox.add(s, _events("a", "b"), NOW)
        await inbox.claim(s, NOW, timedelta(hours=1), limit=2, max_attempts=MAX)
    async with db.transaction() as s:
        assert await inbox.release_all_leases(s) == 2
        # Both due again at once; each claimed alone, as any event tried before.
        assert len(await inbox.claim(s, NOW, LEASE, limit=5, max_attempts=MAX)) == 1
        assert len(await inbox.claim(s, NOW, LEASE, limit=5, max_attempts=MAX)) == 1


async def test_an_event_that_kills_the_process_is_parked_once_its_attempts_are_spent(
    db: Database,
) -> None:
    async with db.transaction() as s:
        await inbox.add(s, _events("poison"), NOW)
    for attempt in (1, 2, 3):
        async with db.transaction() as s:
            [c] = await inbox.claim(s, NOW, LEASE, max_attempts=3)
        assert c.attempts == attempt  # counted, and committed, before any work is done
        async with db.transaction() as s:  # the process died; the next one starts up
            assert await inbox.release_all_leases(s) == 1
    async with db.transaction() as s:
        claims = await inbox.claim_or_park(s, NOW, LEASE, limit=5, max_attempts=3)
    assert claims.claimed == []
    assert [(p.attempts, p.error) for p in claims.parked] == [(3, inbox.PROCESS_DIED)]
    async with db.transaction() as s:
        assert await inbox.claim(s, NOW + LEASE * 10, LEASE, max_attempts=3) == []
        [row] = await inbox.failed(s)
    assert (row.status, row.attempts, row.last_error) == ("failed", 3, inbox.PROCESS_DIED)
    assert "process died" in inbox.PROCESS_DIED


async def test_a_claim_whose_lease_ran_out_on_its_last_attempt_is_parked(db: Database) -> None:
    async with db.transaction() as s:
        await inbox.add(s, _events("a"), NOW)
        [c] = await inbox.claim(s, NOW, LEASE, max_attempts=1)
    async with db.transaction() as s:
        assert await inbox.claim(s, NOW + LEASE / 2, LEASE, max_attempts=1) == []
        assert await inbox.counts(s) == {"processing": 1}  # still its worker's
        claims = await inbox.claim_or_park(s, NOW + LEASE * 2, LEASE, max_attempts=1)
    assert claims.claimed == []
    assert [(p.id, p.error) for p in claims.parked] == [(c.id, inbox.LEASE_RAN_OUT)]
    with pytest.raises(inbox.LeaseLost):  # the stalled worker's late result is dropped
        async with db.transaction() as s:
            await inbox.finish(s, c, NOW)


async def test_a_failure_the_worker_sees_does_not_count_the_attempt_twice(db: Database) -> None:
    async with db.transaction() as s:
        await inbox.add(s, _events("a"), NOW)
    for attempt in (1, 2):
        async with db.transaction() as s:
            [c] = await inbox.claim(s, NOW, LEASE, max_attempts=3)
            assert c.attempts == attempt
            await inbox.retry_later(s, c, "RegistryError: timeout", NOW)
    async with db.transaction() as s:
        [c] = await inbox.claim(s, NOW, LEASE, max_attempts=3)  # the third of three
    assert c.attempts == 3


async def test_an_event_tried_before_is_claimed_alone_never_in_a_batch(db: Database) -> None:
    """Should it be what kills the process, it must not spend other events' attempts."""
    async with db.transaction() as s:
        await inbox.add(s, _events("a", "b", "c", "d"), NOW)
    async with db.transaction() as s:
        [a, b, _, _] = await inbox.claim(s, NOW, LEASE, limit=4, max_attempts=MAX)
        await inbox.finish(s, a, NOW)
        await inbox.retry_later(s, b, "died", NOW)  # b alone is due again, as are c and d
        await inbox.release_all_leases(s)
    batches = []
    for _ in range(3):
        async with db.transaction() as s:
            batches.append(
                [c.payload for c in await inbox.claim(s, NOW, LEASE, limit=4, max_attempts=MAX)]
            )
    assert batches == [['{"k": "b"}'], ['{"k": "c"}'], ['{"k": "d"}']]


async def test_a_batch_is_the_fresh_events_before_the_oldest_retried_one(db: Database) -> None:
    async with db.transaction() as s:
        await inbox.add(s, _events("a"), NOW)
        [a] = await inbox.claim(s, NOW, LEASE, max_attempts=MAX)
        await inbox.retry_later(s, a, "RegistryError: timeout", NOW + timedelta(seconds=1))
        await inbox.add(s, _events("b", "c"), NOW)
    async with db.transaction() as s:
        fresh = await inbox.claim(s, NOW, LEASE, limit=4, max_attempts=MAX)
    async with db.transaction() as s:
        retried = await inbox.claim(s, NOW + timedelta(seconds=1), LEASE, limit=4, max_attempts=MAX)
    assert [c.payload for c in fresh] == ['{"k": "b"}', '{"k": "c"}']
    assert [(c.payload, c.attempts) for c in retried] == [('{"k": "a"}', 2)]


async def test_image_push_is_upserted_and_findings_kept_once(db: Database) -> None:
    f = Finding("runs-as-root", Severity.MEDIUM, "Image runs as root", "d", "r")
    ids = []
    for tag in ("1.0", "latest"):
        async with db.transaction() as s:
            image_id = await images.record_push(
                s,
                registry="local",
                repository="team-a/app",
                digest=DIGEST,
                media_type="application/vnd.oci.image.manifest.v1+json",
                tag=tag,
                actor=None,
                now=NOW,
            )
            await images.record_findings(s, image_id, [f], NOW)
            ids.append(image_id)
    async with db.transaction() as s:
        image = await images.get(s, "local", "team-a/app", DIGEST)
        rows = await images.findings_of(s, ids[0])
        await images.mark_deleted(
            s, registry="local", repository="team-a/app", digest=DIGEST, now=NOW
        )
    async with db.transaction() as s:
        deleted = await images.get(s, "local", "team-a/app", DIGEST)
    assert ids[0] == ids[1]
    assert image is not None and image.last_tag == "latest"
    assert [r.check_id for r in rows] == ["runs-as-root"]
    assert deleted is not None and deleted.deleted_at == NOW


async def test_outbox_key_is_owed_once_and_taken_by_one_sender(db: Database) -> None:
    async with db.transaction() as s:
        assert await outbox.enqueue(s, key="k", channel="#a", text="t", blocks=[], now=NOW)
        assert not await outbox.enqueue(s, key="k", channel="#a", text="t2", blocks=[], now=NOW)
    async with db.transaction() as s:
        [msg] = await outbox.due(s, NOW, timedelta(minutes=2))
    async with db.transaction() as s:
        assert await outbox.take(s, msg, NOW) is not None
    async with db.transaction() as s:
        assert await outbox.take(s, msg, NOW) is None  # a second replica with the same row
        [held] = await outbox.due(s, NOW, timedelta(minutes=2))
        assert outbox.in_flight(held, NOW, timedelta(minutes=2))  # it holds its channel
        await outbox.posted(s, msg.id, "C1", "1.0001", NOW)
        assert await outbox.known_channel_id(s, "#a") == "C1"
        assert await outbox.pending_count(s) == 0


async def test_times_come_back_timezone_aware(db: Database) -> None:
    async with db.transaction() as s:
        await inbox.add(s, _events("a"), NOW)
        [c] = await inbox.claim(s, NOW, LEASE, max_attempts=MAX)
        await inbox.park(s, c, "x", NOW)
    async with db.transaction() as s:
        [row] = await inbox.failed(s)
    assert row.received_at == NOW and row.received_at.tzinfo is not None


def _packages(n: int) -> list[Package]:
    return [Package("Debian:12", f"pkg{i}", "1.0") for i in range(n)]


async def _inventory(
    db: Database, packages: list[Package], limit: int, batch: int
) -> images.Inventory:
    return await images.record_inventory(
        db,
        registry="local",
        repository="team-a/app",
        digest=DIGEST,
        media_type=None,
        packages=packages,
        limit=limit,
        now=NOW,
        batch=batch,
    )


async def _package_rows(s: AsyncSession) -> int:
    return int((await s.execute(select(func.count()).select_from(ImagePackage))).scalar_one())


async def test_an_inventory_over_the_cap_is_recorded_as_far_as_the_cap_and_flagged(
    db: Database,
) -> None:
    listed = _packages(25)
    listed += listed[:5]  # the same packages read from a second platform: not counted twice
    inventory = await _inventory(db, listed, limit=10, batch=4)
    again = await _inventory(db, listed, limit=10, batch=4)  # the event runs again
    async with db.transaction() as s:
        rows = await images.packages_of(s, again.image_id)
    assert inventory == again == images.Inventory(again.image_id, recorded=10, listed=25)
    assert inventory.capped
    assert [r.name for r in rows] == [f"pkg{i}" for i in range(10)]  # the first ten, once
    assert images.PACKAGES_CAP == "max_packages_per_image"


async def test_an_inventory_within_the_cap_is_recorded_whole_and_not_flagged(
    db: Database,
) -> None:
    inventory = await _inventory(db, _packages(10), limit=10, batch=3)
    async with db.transaction() as s:
        assert len(await images.packages_of(s, inventory.image_id)) == 10
    assert not inventory.capped


async def test_an_image_is_not_known_before_its_push_commits_only_its_inventory(
    db: Database,
) -> None:
    inventory = await _inventory(db, _packages(3), limit=10, batch=10)
    async with db.transaction() as s:
        before = await images.latest_per_repository(s)
        known_before = await cluster.known_image(s, "local", "team-a/app", DIGEST)
        image_id = await images.record_push(
            s,
            registry="local",
            repository="team-a/app",
            digest=DIGEST,
            media_type=None,
            tag="1",
            actor=None,
            now=NOW,
        )
    async with db.transaction() as s:
        after = await images.latest_per_repository(s)
        known_after = await cluster.known_image(s, "local", "team-a/app", DIGEST)
    assert (before, known_before) == ([], False)
    assert image_id == inventory.image_id
    assert [i.id for i in after] == [image_id] and known_after


async def test_package_batches_commit_one_by_one_and_intake_writes_between_them(
    db: Database,
) -> None:
    """A large inventory must not hold the database: on SQLite its one write lock, which a
    webhook's insert waits for (and gives up on: `database is locked`)."""
    cap, batch = 5_000, 250
    seen: list[int] = []  # package rows committed when each webhook insert committed
    writing = asyncio.create_task(_inventory(db, _packages(cap + 1_000), limit=cap, batch=batch))
    n = 0
    while not writing.done():
        n += 1
        added = await inbox.add_committed(db.intake_engine, _events(f"hook{n}"), NOW, patience=2.0)
        assert added == {("local", f"hook{n}")}
        async with db.transaction() as s:
            seen.append(await _package_rows(s))
    inventory = await writing
    async with db.transaction() as s:
        assert await inbox.counts(s) == {"pending": n}
        assert len(await images.packages_of(s, inventory.image_id)) == cap
    between = [c for c in seen if 0 < c < cap]
    assert between, f"no webhook insert committed between two package batches: {seen}"
    assert all(c % batch == 0 for c in between)  # whole batches, each committed by itself
