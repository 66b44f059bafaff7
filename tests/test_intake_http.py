"""POST /hooks/registry/{name}: what a registry (or an attacker) gets back, and what is stored."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.store.db import Database
from bot.store.models import InboxEvent
from tests import test_distribution_parse as distribution_samples
from tests.conftest import WEBHOOK_SECRET, make_settings
from tests.test_registry_sources import EXPECTED, IGNORED, UNKNOWN, _load, retyped

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
    assert (
        'crowsnest_events_rejected_total{reason="unauthorized",source="local",status="401"} 1.0'
        in text
    )


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


# --- every source's real samples, through the endpoint -----------------------------------------

KINDS = ["artifact-registry", "distribution", "dockerhub", "ecr", "ghcr", "harbor", "quay"]


@pytest.fixture
async def sources(app_client, sqlite_url):  # type: ignore[no-untyped-def]
    """One registry of every kind, named after its kind."""
    registries = [
        {"name": kind, "kind": kind, "url": "http://127.0.0.1:9", "webhook_secret": WEBHOOK_SECRET}
        for kind in KINDS
    ]
    settings = make_settings(sqlite_url, worker={"concurrency": 0}, registries=registries)
    client, runtime = await app_client(settings)
    client.runtime = runtime
    return client


async def _post(client, kind: str, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
    """POST as the source of `kind` presents its secret (CONTRACT.md). A captured request's
    Host and Content-Length are its own: the client sets them for this one."""
    transport = {"host", "content-length"}
    headers = {k: v for k, v in headers.items() if k.lower() not in transport}
    headers["Content-Type"] = "application/json"
    query: dict[str, str] = {}
    if kind in ("distribution", "ecr"):
        headers["Authorization"] = f"Bearer {WEBHOOK_SECRET}"
    elif kind == "harbor":
        headers["Authorization"] = WEBHOOK_SECRET
    elif kind == "ghcr":
        mac = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={mac}"
    else:
        query["token"] = WEBHOOK_SECRET
    return await client.post(f"/hooks/registry/{kind}", data=body, params=query, headers=headers)


def _samples(kind: str) -> tuple[list[str], list[str]]:
    """(handled samples, ignored samples) among the real captures of `kind`."""
    if kind == "distribution":
        handled = [*distribution_samples.PUSHES, *distribution_samples.DELETES]
        return handled, sorted(distribution_samples.IGNORED)
    return list(EXPECTED[kind]), sorted(IGNORED[kind])


def _load_any(kind: str, name: str) -> tuple[dict[str, str], bytes]:
    if kind == "distribution":
        return distribution_samples._load(name)
    return _load(kind, name)


@pytest.mark.parametrize("kind", KINDS)
async def test_handled_samples_are_stored_and_ignored_ones_get_the_ignored_answer(  # type: ignore[no-untyped-def]
    sources, kind: str
) -> None:
    handled, ignored = _samples(kind)
    stored = 0
    for name in sorted(handled):
        resp = await _post(sources, kind, *_load_any(kind, name))
        assert resp.status == 202, (name, await resp.text())
        answer = await resp.json()
        assert answer == {"accepted": answer["accepted"], "duplicates": 0, "ignored": 0}, name
        assert answer["accepted"] >= 1, name
        stored += answer["accepted"]
    assert stored == await _stored(sources.runtime.core.db)
    for name in ignored:
        headers, body = _load_any(kind, name)
        events = len(json.loads(body).get("events", [None])) if kind == "distribution" else 1
        resp = await _post(sources, kind, headers, body)
        assert resp.status == 202, (name, await resp.text())
        assert await resp.json() == {"accepted": 0, "duplicates": 0, "ignored": events}, name
    assert await _stored(sources.runtime.core.db) == stored
    text = await (await sources.get("/metrics")).text()
    rejected = [x for x in text.splitlines() if x.startswith("crowsnest_events_rejected_total{")]
    assert not [x for x in rejected if f'source="{kind}"' in x]


@pytest.mark.parametrize("kind", sorted(UNKNOWN))
async def test_an_unknown_type_gets_the_unsupported_answer_and_is_counted_apart(  # type: ignore[no-untyped-def]
    sources, kind: str
) -> None:
    for name in UNKNOWN[kind]:
        resp = await _post(sources, kind, *retyped(kind, name))
        assert resp.status == 200, (name, await resp.text())
        answer = await resp.json()
        assert answer == {
            "accepted": 0,
            "duplicates": 0,
            "ignored": 0,
            "unsupported": 1,
            "detail": answer["detail"],
        }
        assert name.rpartition(" ")[2] in answer["detail"] and "unsupported" in answer["detail"]
    assert await _stored(sources.runtime.core.db) == 0
    # A malformed body is still a 400, counted under its own reason.
    resp = await _post(sources, kind, {"X-GitHub-Delivery": "d-1"}, b"{not json")
    assert resp.status == 400
    text = await (await sources.get("/metrics")).text()
    unsupported = f'{{reason="unsupported",source="{kind}",status="200"}} {len(UNKNOWN[kind])}.0'
    assert f"crowsnest_events_rejected_total{unsupported}" in text
    malformed = f'{{reason="malformed",source="{kind}",status="400"}} 1.0'
    assert f"crowsnest_events_rejected_total{malformed}" in text
    assert f'crowsnest_events_ignored_total{{source="{kind}"}}' not in text


async def test_a_distribution_batch_with_unsupported_events_stores_the_others(  # type: ignore[no-untyped-def]
    client,
) -> None:
    push = json.loads(PUSH)["events"][0]
    odd = push | {"id": "odd-1", "action": "frobnicate"}
    body = json.dumps({"events": [push, odd, odd | {"id": "odd-2"}]}).encode()
    resp = await client.post("/hooks/registry/local", data=body, headers=AUTH)
    assert resp.status == 202
    answer = {"accepted": 1, "duplicates": 0, "ignored": 0, "unsupported": 2}
    assert await resp.json() == answer
    assert await _stored(client.runtime.core.db) == 1
    text = await (await client.get("/metrics")).text()
    reasons = '{reason="unsupported",source="local",status="202"} 2.0'
    assert f"crowsnest_events_rejected_total{reasons}" in text
