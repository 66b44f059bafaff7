"""The inbox, images and the Slack outbox on both engines: SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.db import Database
from bot.findings import Finding, Severity
from bot.store import images, inbox, outbox

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
DIGEST = "sha256:" + "ab" * 32


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
        early = await inbox.claim(s, NOW - timedelta(microseconds=1), LEASE, limit=10)
        claimed = await inbox.claim(s, NOW, LEASE, limit=10)
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
        one = await inbox.claim(s, NOW, LEASE, limit=2)
    async with db.transaction() as s:
        two = await inbox.claim(s, NOW, LEASE, limit=2)
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
                claimed = await inbox.claim(s, NOW, LEASE, limit=3)
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
        [old] = await inbox.claim(s, NOW, LEASE)
    async with db.transaction() as s:
        assert await inbox.claim(s, NOW + LEASE / 2, LEASE) == []
    async with db.transaction() as s:
        [new] = await inbox.claim(s, NOW + LEASE * 2, LEASE)
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
        [c] = await inbox.claim(s, NOW, LEASE)
        await inbox.retry_later(s, c, "RegistryError: timeout", NOW + timedelta(seconds=10))
    async with db.transaction() as s:
        assert await inbox.claim(s, NOW + timedelta(seconds=5), LEASE) == []
        [c] = await inbox.claim(s, NOW + timedelta(seconds=11), LEASE)
        await inbox.park(s, c, "PermanentError: manifest unknown", NOW)
    async with db.transaction() as s:
        [row] = await inbox.failed(s)
        assert (row.attempts, row.last_error) == (2, "PermanentError: manifest unknown")
        assert await inbox.requeue_failed(s, NOW) == 1
        assert await inbox.counts(s) == {"pending": 1}


async def test_crash_recovery_releases_every_claim(db: Database) -> None:
    async with db.transaction() as s:
        await inbox.add(s, _events("a", "b"), NOW)
        await inbox.claim(s, NOW, timedelta(hours=1), limit=2)
    async with db.transaction() as s:
        assert await inbox.release_all_leases(s) == 2
        assert len(await inbox.claim(s, NOW, LEASE, limit=5)) == 2


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
        [c] = await inbox.claim(s, NOW, LEASE)
        await inbox.park(s, c, "x", NOW)
    async with db.transaction() as s:
        [row] = await inbox.failed(s)
    assert row.received_at == NOW and row.received_at.tzinfo is not None
