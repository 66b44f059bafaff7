"""Fault injection: Slack and PostgreSQL going away, misbehaving registries, `kill -9` in a burst,
and two replicas sharing one inbox. What must hold throughout: a 202 is a promise, every stored
event is processed once, and Slack sees every owed message exactly once (in order per channel).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Database as DatabaseSettings
from bot.config import Slack as SlackSettings
from bot.infra.clock import SystemClock
from bot.infra.metrics import Metrics
from bot.slack.delivery import Delivery
from bot.slack.posters import Posted, WebApiPoster
from bot.store import outbox
from bot.store.db import Database, migrate
from bot.store.models import DecisionRow, InboxEvent, SlackMessage, Suppression
from tests.conftest import BOT_TOKEN, SIGNING_SECRET, WEBHOOK_SECRET, make_settings, slack_section
from tests.support.drain import drained
from tests.support.fake_registry import FakeRegistry
from tests.support.faulty_registry import FaultyRegistry
from tests.support.seed import seed_push
from tests.support.serve import serve, wait_ready
from tests.support.services import Postgres, free_port, start_postgres
from tests.support.slack_standin import Call, SlackStandIn

pytestmark = pytest.mark.faults

OCI = "application/vnd.oci.image.manifest.v1+json"
HOOK_HEADERS = {
    "Authorization": f"Bearer {WEBHOOK_SECRET}",
    "Content-Type": "application/json",
}
ROOT = {"config": {"User": ""}}  # runs as root: a medium finding, so every push is announced
TEAMS = [
    {"name": "team-a", "channel": "#team-a", "repositories": ["team-a/*"]},
    {"name": "team-b", "channel": "#team-b", "repositories": ["team-b/*"]},
]


# --------------------------------------------------------------------------- helpers


def push_body(event_id: str, repository: str, tag: str, digest: str) -> bytes:
    event = {
        "id": event_id,
        "timestamp": "2026-12-01T19:50:44.167833934Z",
        "action": "push",
        "target": {"mediaType": OCI, "digest": digest, "repository": repository, "tag": tag},
        "actor": {},
    }
    return json.dumps({"events": [event]}).encode()


async def push_each_team(client: Any, fake: FakeRegistry, name: str, tag: str, n: int) -> None:
    """`n` repositories per team (`team-a/<name><i>`, …), each pushed once and acknowledged."""
    for i in range(n):
        for team in ("team-a", "team-b"):
            repository = f"{team}/{name}{i}"
            digest = fake.add_image(repository, tag, ROOT)
            resp = await client.post(
                "/hooks/registry/local",
                data=push_body(f"{team}-{name}-{i}", repository, tag, digest),
                headers=HOOK_HEADERS,
            )
            assert resp.status == 202


def registries(url: str, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": "local",
            "kind": "distribution",
            "url": url,
            "webhook_secret": WEBHOOK_SECRET,
            "timeout": 2,
            **extra,
        }
    ]


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, every: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def message_key(call: Call) -> str:
    return str(((call.args.get("metadata") or {}).get("event_payload") or {}).get("key"))


def post_keys(slack: SlackStandIn, *, ok_only: bool = True) -> list[str]:
    return [message_key(c) for c in slack.calls_to("chat.postMessage", ok_only=ok_only)]


async def inbox_rows(db: Database) -> list[InboxEvent]:
    async with db.transaction() as s:
        return list((await s.execute(select(InboxEvent).order_by(InboxEvent.id))).scalars())


async def outbox_rows(db: Database) -> list[SlackMessage]:
    async with db.transaction() as s:
        rows = await s.execute(select(SlackMessage).order_by(SlackMessage.id))
        return list(rows.scalars())


async def settled(db: Database) -> bool:
    """Every event done or failed, every owed message posted or failed."""
    async with db.transaction() as s:
        busy = await s.execute(
            select(func.count())
            .select_from(InboxEvent)
            .where(InboxEvent.status.in_(("pending", "processing")))
        )
        if busy.scalar_one():
            return False
        return await outbox.pending_count(s) == 0


def record_arrival_times(slack: SlackStandIn) -> dict[int, float]:
    """id(call) -> monotonic arrival time, filled in as the stand-in records calls."""
    times: dict[int, float] = {}
    record = slack._record

    async def timed(call: Call) -> None:
        times[id(call)] = time.monotonic()
        await record(call)

    slack._record = timed  # type: ignore[method-assign]
    return times


# --------------------------------------------------------------------------- Slack outages


async def test_slack_down_then_back_delivers_every_owed_message_once_in_order(
    app_client: Any, sqlite_url: str, slack: SlackStandIn
) -> None:
    fake = FakeRegistry()
    await fake.start()
    try:
        settings = make_settings(
            sqlite_url,
            slack=slack_section(slack, max_retry_backoff=0.4),
            registries=registries(fake.url),
            teams=TEAMS,
        )
        client, runtime = await app_client(settings)
        db = runtime.core.db
        slack.go_down()
        await push_each_team(client, fake, "app", "1.0", 10)

        async def owed_and_tried() -> bool:
            rows = [r for r in await outbox_rows(db) if r.kind == "post"]
            return len(rows) == 20 and sum(1 for r in rows if r.last_error) >= 2

        # Every event is processed and the delivery loop has failed against the dead Slack.
        await eventually(owed_and_tried, 8, "20 owed messages, delivery failing")
        assert slack.calls_to("chat.postMessage", ok_only=False) == []
        await asyncio.sleep(0.5)
        slack.come_back()
        await slack.wait_for("chat.postMessage", 20, timeout=8)
        await eventually(lambda: settled(db), 5, "the outbox to drain")
        await asyncio.sleep(0.3)  # a late duplicate would show up here

        keys = post_keys(slack)
        assert len(keys) == 20 and len(set(keys)) == 20, Counter(keys).most_common(3)
        owed = [r for r in await outbox_rows(db) if r.kind == "post"]
        assert {r.status for r in owed} == {"posted"}
        for channel in ("#team-a", "#team-b"):
            want = [r.key for r in owed if r.channel == channel]
            got = [
                message_key(c)
                for c in slack.calls_to("chat.postMessage")
                if c.args["channel"] == channel
            ]
            shown = [
                m["metadata"]["event_payload"]["key"]
                for m in slack.messages[channel]
                if "metadata" in m
            ]
            assert len(want) == 10
            assert got == want, f"{channel}: posted out of outbox order"
            assert shown == want, f"{channel}: channel history out of order"
    finally:
        await fake.stop()


async def test_429_and_500s_lose_nothing_and_double_nothing(
    app_client: Any, sqlite_url: str, slack: SlackStandIn
) -> None:
    fake = FakeRegistry()
    await fake.start()
    times = record_arrival_times(slack)
    slack.fail_next("chat.postMessage", 429, retry_after=1)
    slack.fail_next("chat.postMessage", 500, times=3)
    slack.fail_next("chat.postMessage", 503, times=1)
    try:
        settings = make_settings(
            sqlite_url,
            slack=slack_section(slack, max_retry_backoff=0.3),
            registries=registries(fake.url),
            teams=TEAMS,
        )
        client, runtime = await app_client(settings)
        await push_each_team(client, fake, "svc", "2.0", 3)
        await slack.wait_for("chat.postMessage", 6, timeout=8)
        await eventually(lambda: settled(runtime.core.db), 5, "the outbox to drain")
        await asyncio.sleep(0.3)

        every = slack.calls_to("chat.postMessage", ok_only=False)
        failed = [c for c in every if not c.ok]
        assert [c.status for c in failed] == [429, 500, 500, 500, 503]
        keys = post_keys(slack)
        assert len(keys) == 6 and len(set(keys)) == 6, Counter(keys).most_common(3)
        rows = [r for r in await outbox_rows(runtime.core.db) if r.kind == "post"]
        assert sorted(keys) == sorted(r.key for r in rows)
        assert {r.status for r in rows} == {"posted"}
        # Retry-After was honoured: the rate-limited message was not sent again within 1 s.
        limited = failed[0]
        again = next(
            c for c in every if c is not limited and message_key(c) == message_key(limited)
        )
        assert times[id(again)] - times[id(limited)] >= 0.95
    finally:
        await fake.stop()


# --------------------------------------------------------------------------- PostgreSQL outage


@pytest.fixture
def own_postgres(tmp_path: Path) -> Any:
    from tests.conftest import _require_services

    _require_services()
    pg = start_postgres(tmp_path / "own-pg")
    yield pg
    pg.close()


async def test_postgres_outage_answers_503_then_processes_every_acknowledged_event_once(
    app_client: Any, own_postgres: Postgres, slack: SlackStandIn
) -> None:
    pg = own_postgres
    url = pg.url("crowsnest")
    await asyncio.to_thread(migrate, url)
    fake = FaultyRegistry(delay=0.8)
    await fake.start()
    intake_timeout = 0.5
    try:
        settings = make_settings(
            url,
            server={"intake_timeout": intake_timeout},
            slack=slack_section(slack, max_retry_backoff=0.3),
            registries=registries(fake.url),
            teams=TEAMS,
            worker={"lease_seconds": 1.5, "max_attempts": 20, "max_retry_backoff": 0.3},
        )
        client, runtime = await app_client(settings)
        db = runtime.core.db
        acked: dict[str, str] = {}  # event id -> outbox key it must produce
        refused: list[tuple[str, str, str]] = []

        async def send(event_id: str, repository: str) -> int:
            digest = fake.add_image(repository, "1.0", ROOT)
            started = time.monotonic()
            resp = await client.post(
                "/hooks/registry/local",
                data=push_body(event_id, repository, "1.0", digest),
                headers=HOOK_HEADERS,
            )
            elapsed = time.monotonic() - started
            if resp.status == 202:
                acked[event_id] = f"push:local/{repository}@{digest}#1.0"
            else:
                assert resp.status == 503, await resp.text()
                assert "error" in await resp.json()
                assert elapsed <= intake_timeout + 0.5, f"503 took {elapsed:.2f}s"
                refused.append((event_id, repository, digest))
            return int(resp.status)

        for i in range(4):
            assert await send(f"before-{i}", f"team-a/before{i}") == 202
        await eventually(lambda: settled(db), 8, "the first events to be processed")
        assert len(post_keys(slack)) == 4

        # Events in flight: claimed, fetching slowly, when the database goes away.
        for i in range(3):
            fake.faults[f"team-b/inflight{i}"] = "delay"
            assert await send(f"inflight-{i}", f"team-b/inflight{i}") == 202

        async def claimed() -> bool:
            return sum(fake.manifest_hits.get(f"team-b/inflight{i}", 0) for i in range(3)) >= 1

        await eventually(claimed, 5, "an in-flight event")
        await asyncio.to_thread(pg.stop)

        for i in range(4):
            assert await send(f"during-{i}", f"team-a/during{i}") == 503
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert (await client.get("/healthz")).status == 200
        await asyncio.sleep(1.0)  # the in-flight fetches finish and fail to commit

        await asyncio.to_thread(pg.start)

        async def is_ready() -> bool:
            return bool((await client.get("/readyz")).status == 200)

        await eventually(is_ready, 10, "/readyz to recover", every=0.1)
        # The registry retries what was refused; and new pushes keep coming.
        for event_id, repository, _digest in list(refused):
            assert await send(event_id, repository) == 202
        for i in range(3):
            assert await send(f"after-{i}", f"team-b/after{i}") == 202

        await eventually(lambda: settled(db), 10, "every acknowledged event to be processed")
        await asyncio.sleep(0.3)

        rows = await inbox_rows(db)
        by_id = Counter(r.dedup_key for r in rows)
        assert set(acked) <= set(by_id), set(acked) - set(by_id)
        assert all(by_id[e] == 1 for e in acked)
        assert {r.status for r in rows if r.dedup_key in acked} == {"done"}, [
            (r.dedup_key, r.status, r.last_error) for r in rows if r.status != "done"
        ]
        keys = Counter(post_keys(slack))
        assert all(n == 1 for n in keys.values()), keys.most_common(3)
        assert set(acked.values()) <= set(keys), set(acked.values()) - set(keys)
        assert len(acked) == 4 + 3 + 4 + 3
        # The outage did hit work in flight: those events ran again after it, and only once.
        inflight = [r for r in rows if r.dedup_key.startswith("inflight-")]
        assert max(r.attempts for r in inflight) >= 2, [(r.dedup_key, r.attempts) for r in inflight]
    finally:
        await fake.stop()


# --------------------------------------------------------------------------- misbehaving registries


@pytest.mark.parametrize("fault", ["hang", "trickle", "bad-config-blob", "bad-manifest"])
async def test_misbehaving_registry_fails_the_event_and_the_worker_moves_on(
    app_client: Any, sqlite_url: str, slack: SlackStandIn, fault: str
) -> None:
    fake = FaultyRegistry(delay=0.2)
    await fake.start()
    try:
        settings = make_settings(
            sqlite_url,
            slack=slack_section(slack),
            registries=registries(fake.url, timeout=1),
            teams=TEAMS,
            worker={"concurrency": 1, "max_attempts": 2, "retry_backoff": 0.05},
        )
        client, runtime = await app_client(settings)
        bad = fake.add_image("team-a/bad", "1.0", {"config": {"User": "", "Labels": {"b": "1"}}})
        good = fake.add_image("team-a/good", "1.0", ROOT)
        if fault == "bad-config-blob":
            fake.corrupt_config_blob("team-a/bad", "1.0")
        else:
            fake.faults["team-a/bad"] = {"bad-manifest": "corrupt"}.get(fault, fault)
        for event_id, repository, digest in (
            ("e-bad", "team-a/bad", bad),
            ("e-good", "team-a/good", good),
        ):
            resp = await client.post(
                "/hooks/registry/local",
                data=push_body(event_id, repository, "1.0", digest),
                headers=HOOK_HEADERS,
            )
            assert resp.status == 202
        await eventually(lambda: settled(runtime.core.db), 8, "both events to be finished")
        rows = {r.dedup_key: r for r in await inbox_rows(runtime.core.db)}
        failed = rows["e-bad"]
        assert failed.status == "failed"
        expected = {
            "hang": "TimeoutError",
            "trickle": "TimeoutError",
            "bad-config-blob": "blob digest mismatch",
            "bad-manifest": "manifest digest mismatch",
        }[fault]
        assert failed.last_error and expected in failed.last_error, failed.last_error
        # Timeouts may pass: retried up to max_attempts. A digest mismatch never will.
        assert failed.attempts == (2 if fault in ("hang", "trickle") else 1)
        assert rows["e-good"].status == "done"
        keys = post_keys(slack)
        assert keys == [f"push:local/team-a/good@{good}#1.0"]
    finally:
        await fake.stop()


async def test_slow_registry_within_its_timeout_is_waited_for(
    app_client: Any, sqlite_url: str, slack: SlackStandIn
) -> None:
    fake = FaultyRegistry(delay=0.6)
    await fake.start()
    try:
        settings = make_settings(
            sqlite_url,
            slack=slack_section(slack),
            registries=registries(fake.url, timeout=1.5),
            teams=TEAMS,
            worker={"concurrency": 1, "max_attempts": 1},
        )
        client, runtime = await app_client(settings)
        fake.faults["team-b/slow"] = "delay"
        digest = fake.add_image("team-b/slow", "1.0", ROOT)
        resp = await client.post(
            "/hooks/registry/local",
            data=push_body("e-slow", "team-b/slow", "1.0", digest),
            headers=HOOK_HEADERS,
        )
        assert resp.status == 202
        await eventually(lambda: settled(runtime.core.db), 8, "the slow event")
        [row] = await inbox_rows(runtime.core.db)
        assert (row.status, row.attempts) == ("done", 1)
        assert post_keys(slack) == [f"push:local/team-b/slow@{digest}#1.0"]
    finally:
        await fake.stop()


# --------------------------------------------------------------------------- subprocesses


def _write_config(
    path: Path,
    *,
    port: int,
    database_url: str,
    registry_url: str,
    slack_url: str,
    concurrency: int = 4,
) -> None:
    path.write_text(
        f"""
[server]
port = {port}
[database]
url = "{database_url}"
[slack]
api_url = "{slack_url}"
bot_token = "{BOT_TOKEN}"
signing_secret = "{SIGNING_SECRET}"
fallback_channel = "#fallback"
channel_interval = 0
coalesce_seconds = 0
retry_backoff = 0.1
max_retry_backoff = 1
[worker]
concurrency = {concurrency}
poll_interval = 0.1
[admission]
token = "admission-token"
[falco]
token = "falco-token"
[[registries]]
name = "local"
kind = "distribution"
url = "{registry_url}"
webhook_secret = "{WEBHOOK_SECRET}"
[[teams]]
name = "team-a"
channel = "#team-a"
repositories = ["team-a/*"]
[[teams]]
name = "team-b"
channel = "#team-b"
repositories = ["team-b/*"]
"""
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


#: On a 2-core machine `crowsnest serve` on SQLite takes, processes and announces about 100 to
#: 150 events a second while this process drives it, so the burst of 5,000 takes 45-60 s.
#: CROWSNEST_FAULTS_BURST sets another size.
BURST = int(os.environ.get("CROWSNEST_FAULTS_BURST", "5000"))
KILL_AFTER = BURST * 2 // 5


async def test_kill_9_in_a_burst_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    slack = SlackStandIn(bot_token=BOT_TOKEN, epoch=time.time())
    await slack.start()
    fake = FakeRegistry()
    await fake.start()
    digest = fake.add_image("team-a/app", "base", ROOT)
    port, db = free_port(), tmp_path / "bot.db"
    config, log = tmp_path / "crowsnest.toml", tmp_path / "serve.log"
    _write_config(
        config,
        port=port,
        database_url=f"sqlite+aiosqlite:///{db}",
        registry_url=fake.url,
        slack_url=slack.api_url,
    )
    started = time.monotonic()
    proc = serve(config, log)
    try:
        await wait_ready(port, proc, log)
        acked: set[int] = set()
        killed = asyncio.Event()
        url = f"http://127.0.0.1:{port}/hooks/registry/local"

        async def send(http: aiohttp.ClientSession, queue: asyncio.Queue[int], kill: bool) -> None:
            while not queue.empty() and not (kill and killed.is_set()):
                i = queue.get_nowait()
                body = push_body(f"ev-{i}", "team-a/app", f"t{i}", digest)
                try:
                    async with http.post(url, data=body, headers=HOOK_HEADERS) as r:
                        if r.status == 202:
                            acked.add(i)
                except aiohttp.ClientError:
                    return
                if kill and len(acked) >= KILL_AFTER and not killed.is_set():
                    killed.set()
                    proc.send_signal(signal.SIGKILL)

        async def burst(numbers: list[int], kill: bool) -> None:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for n in numbers:
                queue.put_nowait(n)
            connector = aiohttp.TCPConnector(limit=32)
            async with aiohttp.ClientSession(connector=connector) as http:
                await asyncio.gather(*(send(http, queue, kill) for _ in range(32)))

        await burst(list(range(BURST)), kill=True)
        proc.wait(10)
        assert killed.is_set() and KILL_AFTER <= len(acked) < BURST
        posted_before = len(slack.calls_to("chat.postMessage"))
        first_acked = set(acked)

        proc = serve(config, log)
        await wait_ready(port, proc, log)
        # The registry redelivers everything it did not get a 202 for, with the same ids.
        resent = sorted(set(range(BURST)) - acked)
        await burst(resent, kill=False)
        assert acked == set(range(BURST))

        await drained(db, 30 + BURST / 20)
        await asyncio.sleep(0.3)
        with sqlite3.connect(db) as conn:
            stored = Counter(r[0] for r in conn.execute("select dedup_key from inbox_events"))
            statuses = dict(conn.execute("select status, count(*) from inbox_events group by 1"))
        # A digest owed since the last scheduled fire may go out during a slow run (one per
        # team, issue 16's first-start digest); it is not part of the burst.
        keys = Counter(k for k in post_keys(slack) if not k.startswith("digest:"))
        texts = [
            c.args["text"] + json.dumps(c.args.get("blocks"))
            for c in slack.calls_to("chat.postMessage")
        ]
        tags = Counter(t for text in texts for t in set(re.findall(r"team-a/app:t(\d+)\b", text)))
        lookups = slack.calls_to("conversations.replies") + slack.calls_to("conversations.history")
        print(
            f"\nburst {BURST}: acked before kill {len(first_acked)}, posted before kill "
            f"{posted_before}, resent {len(resent)}, stored {len(stored)}, "
            f"posted {sum(keys.values())}, looked up in Slack {len(lookups)}, "
            f"took {time.monotonic() - started:.1f}s"
        )
        assert posted_before < len(first_acked), "the kill must land while work was owed"
        assert set(stored) == {f"ev-{i}" for i in range(BURST)}, "an acknowledged event was lost"
        assert max(stored.values()) == 1
        assert statuses == {"done": BURST}
        assert max(keys.values()) == 1, f"posted twice: {keys.most_common(3)}"
        assert sum(keys.values()) == BURST
        assert set(tags) == {str(i) for i in range(BURST)}, "a stored event was not announced"
        assert max(tags.values()) == 1
    finally:
        _stop(proc)
        await fake.stop()
        await slack.stop()


REPLICA_EVENTS = 300


async def test_two_replicas_on_one_postgres_process_post_and_expire_once(
    tmp_path: Path, postgres: Postgres
) -> None:
    name = f"replicas_{os.getpid()}"
    postgres.psql(f"CREATE DATABASE {name} TEMPLATE crowsnest_template")
    url = postgres.url(name)
    now = datetime.now(UTC)
    database = Database(DatabaseSettings(url=url))
    async with database.transaction() as s:
        [finding_id] = await seed_push(
            s,
            repository="team-a/legacy",
            team="team-a",
            findings=[("runs-as-root", "medium")],
            at=now - timedelta(days=10),
        )
        s.add(
            Suppression(
                kind="ignore",
                scope="repository",
                team="team-a",
                registry_name="local",
                repository="team-a/legacy",
                check_id="runs-as-root",
                package="",
                until=now - timedelta(hours=1),
                reason="waiting for the base image",
                decided_by="UOTHER1",
                created_at=now - timedelta(days=8),
                finding_id=finding_id,
            )
        )
    slack = SlackStandIn(bot_token=BOT_TOKEN, epoch=time.time())
    await slack.start()
    fake = FakeRegistry()
    await fake.start()
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    ports = [free_port(), free_port()]
    try:
        for n, port in enumerate(ports):
            config, log = tmp_path / f"replica{n}.toml", tmp_path / f"replica{n}.log"
            _write_config(
                config, port=port, database_url=url, registry_url=fake.url, slack_url=slack.api_url
            )
            procs.append(serve(config, log, level="info", module="tests.support.fast_jobs"))
            logs.append(log)
        await asyncio.gather(
            *(wait_ready(p, proc, log) for p, proc, log in zip(ports, procs, logs, strict=True))
        )

        digests = {
            f"{team}/app{r}": fake.add_image(f"{team}/app{r}", "base", ROOT)
            for team in ("team-a", "team-b")
            for r in range(5)
        }
        repositories = sorted(digests)
        sem = asyncio.Semaphore(16)

        async def send(http: aiohttp.ClientSession, i: int) -> None:
            repository = repositories[i % len(repositories)]
            port = ports[i % 2]
            async with (
                sem,
                http.post(
                    f"http://127.0.0.1:{port}/hooks/registry/local",
                    data=push_body(f"ev-{i}", repository, f"t{i}", digests[repository]),
                    headers=HOOK_HEADERS,
                ) as r,
            ):
                assert r.status == 202, await r.text()

        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(send(http, i) for i in range(REPLICA_EVENTS)))

        async def done() -> bool:
            async with database.transaction() as s:
                open_rows = await s.execute(
                    select(func.count()).select_from(InboxEvent).where(InboxEvent.status != "done")
                )
                if open_rows.scalar_one():
                    return False
                decided = await s.execute(
                    select(func.count())
                    .select_from(DecisionRow)
                    .where(DecisionRow.action == "ignore-expired")
                )
                return bool(decided.scalar_one()) and await outbox.pending_count(s) == 0

        await eventually(done, 20, "both replicas to finish", every=0.2)
        await asyncio.sleep(1.0)  # several more rounds of the scheduled jobs on both replicas

        async with database.transaction() as s:
            stored = Counter((await s.execute(select(InboxEvent.dedup_key))).scalars())
            decisions = list(
                (
                    await s.execute(
                        select(DecisionRow).where(DecisionRow.action == "ignore-expired")
                    )
                ).scalars()
            )
            expired = list((await s.execute(select(Suppression))).scalars())
            owed = list((await s.execute(select(SlackMessage))).scalars())
        metrics = []
        async with aiohttp.ClientSession() as http:
            for port in ports:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                    metrics.append(await r.text())
        processed = [
            float(m)
            for text in metrics
            for m in re.findall(
                r'^crowsnest_events_processed_total\{source="local"\} (\S+)$', text, re.M
            )
        ]
        processed_ids = Counter(
            n for log in logs for n in re.findall(r"processed inbox event (\d+) ", log.read_text())
        )
        keys = Counter(post_keys(slack))
        job_runs = [len(re.findall(r"expire-ignores", log.read_text())) for log in logs]
        acted = sum(
            len(re.findall(r"scheduled job expire-ignores acted on 1 items", log.read_text()))
            for log in logs
        )
        print(f"\nprocessed per replica {processed}, job log lines {job_runs}")

        assert (
            set(stored) == {f"ev-{i}" for i in range(REPLICA_EVENTS)} and max(stored.values()) == 1
        )
        assert sum(processed) == REPLICA_EVENTS, processed
        assert len(processed) == 2 and all(p > 0 for p in processed), "both replicas must work"
        assert len(processed_ids) == REPLICA_EVENTS and max(processed_ids.values()) == 1
        assert max(keys.values()) == 1, f"posted twice: {keys.most_common(3)}"
        assert set(keys) == {m.key for m in owed if m.kind != "update"}
        assert {m.status for m in owed} == {"posted"}
        assert len(decisions) == 1, [(d.id, d.at) for d in decisions]
        assert [s.expired_at is not None for s in expired] == [True]
        assert sum(1 for k in keys if k.startswith("expired:")) == 1
        assert acted == 1
    finally:
        for proc in procs:
            _stop(proc)
        await database.dispose()
        await fake.stop()
        await slack.stop()
        postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class _GatedPoster:
    """A poster for one replica: records what it posts; with `hold`, keeps "first" in flight."""

    def __init__(self, posted: list[str], hold: asyncio.Event | None = None) -> None:
        self.posted, self.hold = posted, hold
        self.in_flight = asyncio.Event()

    async def post(self, msg: SlackMessage, channel: str, thread_ts: str | None) -> Posted:
        if self.hold is not None and msg.key == "first":
            self.in_flight.set()
            await self.hold.wait()
        self.posted.append(msg.key)
        return Posted("C0ORDER1", f"1700000000.{len(self.posted):06d}")

    async def update(self, msg: SlackMessage, channel_id: str, ts: str) -> None:
        return None

    async def upload(self, msg: SlackMessage, channel_id: str, thread_ts: str) -> None:
        return None

    async def find(self, channel_id: str, key: str, since: datetime, thread_ts: str | None) -> None:
        return None

    async def channel_id(self, name: str) -> None:
        return None


async def _owe_in_order(db: Database, *keys: str, channel: str = "#order") -> None:
    """Messages for one channel, each saying its key."""
    async with db.transaction() as s:
        for key in keys:
            await outbox.enqueue(
                s,
                key=key,
                channel=channel,
                text=key,
                blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": key}}],
                now=datetime.now(UTC),
            )


async def test_two_replicas_deliver_one_channel_in_order(db: Database) -> None:
    await _owe_in_order(db, "first", "second")
    posted: list[str] = []
    release = asyncio.Event()
    settings = SlackSettings(channel_interval=1.0, retry_backoff=0.01)
    replica_a = _GatedPoster(posted, hold=release)
    a = Delivery(db, replica_a, settings, Metrics(), SystemClock(), asyncio.Event())
    b = Delivery(db, _GatedPoster(posted), settings, Metrics(), SystemClock(), asyncio.Event())
    first = asyncio.create_task(a.run_once())
    await asyncio.wait_for(replica_a.in_flight.wait(), 5)
    await b.run_once()  # the other replica's delivery loop comes round while "first" is in flight
    release.set()
    await first
    for _ in range(5):
        await a.run_once()
        await b.run_once()
    assert posted == ["first", "second"]


class _GoneOnShutdown(Database):
    """A database that fails every transaction once shutdown has begun (cancelled task)."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise OSError("database went away")
        async with super().transaction() as session:
            yield session


async def test_delivery_stops_when_cancelled_even_if_recording_its_posts_fails(
    database_url: str,
) -> None:
    """The failed record replaces the CancelledError; the loop must stop all the same, or
    shutdown waits on it forever. The post stays `sending`, so a restart looks it up."""
    db = _GoneOnShutdown(DatabaseSettings(url=database_url))
    try:
        await _owe_in_order(db, "zero", "first")
        posted: list[str] = []
        poster = _GatedPoster(posted, hold=asyncio.Event())  # "first" never comes back
        settings = SlackSettings(channel_interval=0, retry_backoff=0.01)
        delivery = Delivery(db, poster, settings, Metrics(), SystemClock(), asyncio.Event())
        loop = asyncio.create_task(delivery.run(poll_interval=0.05))
        await asyncio.wait_for(poster.in_flight.wait(), 5)
        assert posted == ["zero"]  # recorded with the next take, or when the channel is done
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(loop, 5)
    finally:
        await db.dispose()


async def test_two_replicas_keep_a_channels_interval_between_their_posts(
    db: Database, slack: SlackStandIn
) -> None:
    """`slack.channel_interval` holds across replicas: whichever posts next to a channel waits
    out the interval from the other's post (to within one call's network jitter)."""
    interval = 0.3
    times = record_arrival_times(slack)
    settings = SlackSettings(channel_interval=interval, retry_backoff=0.01)

    def replica() -> Delivery:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url, retry_handlers=[])
        poster = WebApiPoster(client, Metrics())
        return Delivery(db, poster, settings, Metrics(), SystemClock(), asyncio.Event())

    a, b = replica(), replica()
    # Taking turns: each replica's post follows one by the other.
    for i in range(4):
        await _owe_in_order(db, f"turn-{i}", channel="#paced")
        assert await (a, b)[i % 2].run_once()
    # Both delivery loops at once, over a backlog.
    await _owe_in_order(db, *(f"both-{i}" for i in range(6)), channel="#paced")
    loops = [asyncio.create_task(r.run(poll_interval=0.05)) for r in (a, b)]
    try:
        await slack.wait_for("chat.postMessage", 10, timeout=15)
        await eventually(lambda: settled(db), 5, "the outbox to drain")
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    posts = slack.calls_to("chat.postMessage")
    assert [message_key(c) for c in posts] == [f"turn-{i}" for i in range(4)] + [
        f"both-{i}" for i in range(6)
    ]
    gaps = [times[id(later)] - times[id(earlier)] for earlier, later in pairwise(posts)]
    assert min(gaps) >= interval - 0.05, [round(g, 3) for g in gaps]
