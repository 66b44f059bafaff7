"""POST /hooks/registry/{name}: what a registry (or an attacker) gets back, and what is stored."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.store.db import Database
from bot.store.models import InboxEvent
from tests.conftest import WEBHOOK_SECRET, make_settings

PUSH = (Path(__file__).parent / "fixtures/registry/distribution/push.json").read_bytes()
CT = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
AUTH = {"Authorization": f"Bearer {WEBHOOK_SECRET}", **CT}


@pytest.fixture
async def client(app_client, sqlite_url):  # type: ignore[no-untyped-def]
    settings = make_settings(sqlite_url, worker={"concurrency": 0}, server={"max_body_bytes": 4096})
    client, runtime = await app_client(settings)
    client.runtime = runtime
    return client


async def _stored(db: Database) -> int:
    async with db.transaction() as s:
        return int((await s.execute(select(func.count()).select_from(InboxEvent))).scalar_one())


async def test_push_is_stored_before_202(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.post("/hooks/registry/local", data=PUSH, headers=AUTH)
    assert resp.status == 202
    assert await resp.json() == {"accepted": 1, "duplicates": 0, "ignored": 0}
    assert await _stored(client.runtime.core.db) == 1


async def test_redelivery_is_accepted_and_stored_once(client) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        resp = await client.post("/hooks/registry/local", data=PUSH, headers=AUTH)
        assert resp.status == 202
    assert (await resp.json())["duplicates"] == 1
    assert await _stored(client.runtime.core.db) == 1


async def test_blob_events_are_accepted_but_not_stored(client) -> None:  # type: ignore[no-untyped-def]
    body = (
        Path(__file__).parent / "fixtures/registry/distribution/push__blob-layer.json"
    ).read_bytes()
    resp = await client.post("/hooks/registry/local", data=body, headers=AUTH)
    assert resp.status == 202
    assert (await resp.json())["ignored"] == 1
    assert await _stored(client.runtime.core.db) == 0


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "error"),
    [
        ("/hooks/registry/local", AUTH, b"{not json", 400, "malformed distribution payload"),
        (
            "/hooks/registry/local",
            {**CT, "Authorization": "Bearer nope"},
            PUSH,
            401,
            "Authorization",
        ),
        ("/hooks/registry/local", CT, PUSH, 401, "Authorization"),
        ("/hooks/registry/nosuch", AUTH, PUSH, 404, "no registry named 'nosuch'"),
        ("/hooks/registry/local", AUTH, b"{" + b" " * 5000 + b"}", 413, "larger than"),
        (
            "/hooks/registry/local",
            {**AUTH, "Content-Type": "text/plain"},
            PUSH,
            415,
            "content type",
        ),
    ],
)
async def test_bad_requests_get_a_json_error_and_store_nothing(  # type: ignore[no-untyped-def]
    client, path, headers, body, status, error
) -> None:
    resp = await client.post(path, data=body, headers=headers)
    assert resp.status == status
    assert resp.content_type == "application/json"
    assert error in (await resp.json())["error"]
    assert await _stored(client.runtime.core.db) == 0


async def test_error_never_echoes_the_secret_or_body(client) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps(
        {
            "events": [{"id": "x", "action": "push", "target": {"repository": 7}}],
            "leak": "<!channel>",
        }
    ).encode()
    resp = await client.post("/hooks/registry/local", data=body, headers=AUTH)
    text = await resp.text()
    assert resp.status == 400
    assert WEBHOOK_SECRET not in text and "<!channel>" not in text


async def test_metrics_count_received_and_rejected(client) -> None:  # type: ignore[no-untyped-def]
    await client.post("/hooks/registry/local", data=PUSH, headers=AUTH)
    await client.post("/hooks/registry/local", data=PUSH, headers={**CT, "Authorization": "x"})
    text = await (await client.get("/metrics")).text()
    assert 'crowsnest_events_received_total{source="local"} 1.0' in text
    assert 'crowsnest_events_rejected_total{source="local",status="401"} 1.0' in text


async def test_health_and_readiness(client) -> None:  # type: ignore[no-untyped-def]
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["revision"] == client.runtime.core.head_revision


async def test_readyz_is_503_before_migrations(app_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", worker={"concurrency": 0}
    )
    client, _ = await app_client(settings)
    resp = await client.get("/readyz")
    assert resp.status == 503


def _hold_write_lock(sqlite_url: str) -> sqlite3.Connection:
    """Another writer (a worker, delivery) in the middle of a transaction."""
    conn = sqlite3.connect(sqlite_url.split(":///", 1)[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


async def test_a_push_waits_for_another_writer_and_is_stored(client, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    holder = _hold_write_lock(sqlite_url)
    try:
        request = asyncio.ensure_future(
            client.post("/hooks/registry/local", data=PUSH, headers=AUTH)
        )
        await asyncio.sleep(0.3)
        assert not request.done()  # no 202 while the event cannot be stored
    finally:
        holder.rollback()
        holder.close()
    resp = await request
    assert resp.status == 202 and (await resp.json())["accepted"] == 1
    assert await _stored(client.runtime.core.db) == 1


async def test_a_writer_holding_on_past_the_intake_timeout_gets_a_503(
    app_client: Any, sqlite_url: str
) -> None:
    """The registry retries a 503; the redelivery, once the lock is free, is stored once."""
    settings = make_settings(sqlite_url, worker={"concurrency": 0}, server={"intake_timeout": 0.5})
    client, runtime = await app_client(settings)
    holder = _hold_write_lock(sqlite_url)
    try:
        resp = await client.post("/hooks/registry/local", data=PUSH, headers=AUTH)
        assert resp.status == 503
        assert "retry" in (await resp.json())["error"]
    finally:
        holder.rollback()
        holder.close()
    resp = await client.post("/hooks/registry/local", data=PUSH, headers=AUTH)
    assert resp.status == 202
    assert await _stored(runtime.core.db) == 1
