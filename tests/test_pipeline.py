"""Inbox to outbox through the running app: retries, poison events, payload URLs never fetched."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.store import inbox
from bot.store.models import SlackMessage
from handlers.cli import main
from tests.conftest import WEBHOOK_SECRET, make_settings
from tests.support.fake_registry import FakeRegistry
from tests.support.settle import eventually

HEADERS = {"Authorization": f"Bearer {WEBHOOK_SECRET}", "Content-Type": "application/json"}


def notification(
    repository: str,
    digest: str | None,
    tag: str,
    *,
    event_id: str = "e1",
    url: str | None = None,
    host: str | None = None,
) -> bytes:
    target: dict[str, Any] = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "repository": repository,
        "tag": tag,
        "digest": digest or "sha256:" + "0" * 64,
    }
    if url:
        target["url"] = url
    return json.dumps(
        {
            "events": [
                {
                    "id": event_id,
                    "action": "push",
                    "target": target,
                    "request": {"host": host or "x"},
                    "actor": {},
                }
            ]
        }
    ).encode()


@pytest.fixture
async def fake() -> AsyncIterator[FakeRegistry]:
    f = FakeRegistry()
    await f.start()
    yield f
    await f.stop()


def _settings(url: str, fake: FakeRegistry, **kw: Any) -> Any:
    return make_settings(
        url,
        registries=[
            {
                "name": "local",
                "kind": "distribution",
                "url": fake.url,
                "webhook_secret": WEBHOOK_SECRET,
                "timeout": 0.5,
            }
        ],
        **kw,
    )


async def test_payload_url_and_host_are_never_fetched(app_client, sqlite_url, fake) -> None:  # type: ignore[no-untyped-def]
    attacker = FakeRegistry()
    await attacker.start()
    try:
        digest = fake.add_image("team-a/app", "1.0", {"config": {"User": "app"}})
        client, rt = await app_client(_settings(sqlite_url, fake))
        body = notification(
            "team-a/app",
            digest,
            "1.0",
            url=f"{attacker.url}/v2/team-a/app/manifests/{digest}",
            host=f"127.0.0.1:{attacker.port}",
        )
        assert (
            await client.post("/hooks/registry/local", data=body, headers=HEADERS)
        ).status == 202

        async def owed() -> bool:
            async with rt.core.db.transaction() as s:
                return bool((await inbox.counts(s)).get("done"))

        await eventually(owed)
        assert attacker.requests == [] and attacker.token_requests == []
        assert fake.requests  # the configured registry was the one asked
    finally:
        await attacker.stop()


async def test_unreachable_registry_is_retried_then_parked_and_listed(  # type: ignore[no-untyped-def]
    app_client, sqlite_url, fake, capsys, tmp_path: Path
) -> None:
    fake.hang = True
    settings = _settings(
        sqlite_url, fake, worker={"max_attempts": 3, "retry_backoff": 0.05, "poll_interval": 0.05}
    )
    client, rt = await app_client(settings)
    body = notification("team-a/app", None, "1.0")
    assert (await client.post("/hooks/registry/local", data=body, headers=HEADERS)).status == 202

    async def parked() -> bool:
        async with rt.core.db.transaction() as s:
            return (await inbox.counts(s)) == {"failed": 1}

    await eventually(parked, timeout=10)
    assert len([r for r in fake.requests if "/manifests/" in r]) == 3
    metrics = await (await client.get("/metrics")).text()
    assert 'crowsnest_events_failed_total{source="local"} 1.0' in metrics
    assert 'crowsnest_events_retried_total{source="local"} 2.0' in metrics

    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "{sqlite_url}"\n')
    assert await asyncio.to_thread(main, ["events", "--failed", "--config", str(config)]) == 0
    listing = capsys.readouterr().out
    assert "local\timage.pushed\te1\tattempts=3\tRegistryError" in listing


async def test_unknown_manifest_is_parked_at_once(app_client, sqlite_url, fake) -> None:  # type: ignore[no-untyped-def]
    client, rt = await app_client(_settings(sqlite_url, fake))
    body = notification("team-a/app", None, "gone")
    await client.post("/hooks/registry/local", data=body, headers=HEADERS)

    async def parked() -> bool:
        async with rt.core.db.transaction() as s:
            return (await inbox.counts(s)) == {"failed": 1}

    await eventually(parked)
    async with rt.core.db.transaction() as s:
        [row] = await inbox.failed(s)
    assert row.attempts == 1 and "404" in (row.last_error or "")


async def test_redelivered_push_is_processed_and_announced_once(
    app_client, sqlite_url, fake
) -> None:  # type: ignore[no-untyped-def]
    digest = fake.add_image("team-a/app", "1.0", {"config": {}})
    client, rt = await app_client(_settings(sqlite_url, fake))
    body = notification("team-a/app", digest, "1.0", event_id="same")
    for _ in range(5):
        assert (
            await client.post("/hooks/registry/local", data=body, headers=HEADERS)
        ).status == 202
    again = notification("team-a/app", digest, "1.0", event_id="other-id-same-push")
    await client.post("/hooks/registry/local", data=again, headers=HEADERS)

    async def done() -> bool:
        async with rt.core.db.transaction() as s:
            return (await inbox.counts(s)) == {"done": 2}

    await eventually(done)
    async with rt.core.db.transaction() as s:
        keys = (await s.execute(select(SlackMessage.key))).scalars().all()
    assert keys == [f"push:local/team-a/app@{digest}#1.0"]


async def _announced(rt: Any, client: Any, body: bytes) -> str:
    assert (await client.post("/hooks/registry/local", data=body, headers=HEADERS)).status == 202

    async def done() -> bool:
        async with rt.core.db.transaction() as s:
            return bool((await inbox.counts(s)).get("done"))

    await eventually(done)
    async with rt.core.db.transaction() as s:
        rows = (await s.execute(select(SlackMessage.blocks))).scalars().all()
    return " ".join(rows)


def _team(**extra: Any) -> dict[str, Any]:
    return {"name": "team-a", "channel": "#a", "repositories": ["team-a/*"], **extra}


async def test_team_requiring_signatures_gets_unsigned_until_a_signature_exists(  # type: ignore[no-untyped-def]
    app_client, sqlite_url, fake
) -> None:
    unsigned_digest = fake.add_image("team-a/app", "1.0", {"config": {"User": "app"}})
    signed_digest = fake.add_image("team-a/app", "2.0", {"config": {"User": "app", "Env": ["A=2"]}})
    fake.add_image("team-a/app", signed_digest.replace(":", "-") + ".sig", {"config": {}})
    client, rt = await app_client(
        _settings(sqlite_url, fake, teams=[_team(require_signatures=True)])
    )
    shown = await _announced(rt, client, notification("team-a/app", unsigned_digest, "1.0"))
    assert "unsigned" in shown
    body = notification("team-a/app", signed_digest, "2.0", event_id="e2")
    assert (await client.post("/hooks/registry/local", data=body, headers=HEADERS)).status == 202

    async def both_done() -> bool:
        async with rt.core.db.transaction() as s:
            return (await inbox.counts(s)).get("done") == 2

    await eventually(both_done)
    async with rt.core.db.transaction() as s:
        from bot.store import tracking

        rows = await tracking.tracked_for(s, "local", "team-a/app")
    assert [(r.check_id, r.status) for r in rows] == [("unsigned", "fixed")]


async def test_base_outside_the_allowed_list_and_regrading(app_client, sqlite_url, fake) -> None:  # type: ignore[no-untyped-def]
    """The team's policy in what is announced: a base outside `allowed_bases` is a finding,
    `severities` re-grades runs-as-root, and `disabled_checks` silences mutable-tag, which
    a push under `latest` would otherwise raise."""
    label = {"org.opencontainers.image.base.name": "docker.io/library/ubuntu:18.04"}
    digest = fake.add_image("team-a/app", "latest", {"config": {"User": "", "Labels": label}})
    settings = _settings(
        sqlite_url,
        fake,
        teams=[
            _team(
                allowed_bases=["cgr.dev/chainguard/*"],
                severities={"runs-as-root": "critical"},
                disabled_checks=["mutable-tag"],
            )
        ],
    )
    client, rt = await app_client(settings)
    shown = await _announced(rt, client, notification("team-a/app", digest, "latest"))
    assert "untrusted-base" in shown and "docker.io/library/ubuntu:18.04" in shown
    assert "*CRITICAL* `runs-as-root`" in shown
    assert "mutable-tag" not in shown


async def test_trivy_as_scanner_adds_its_findings(
    app_client, sqlite_url, fake, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    report = Path(__file__).parent / "fixtures/reports/alpine-310.json"
    trivy = tmp_path / "trivy"
    trivy.write_text(f"#!/bin/sh\ncat '{report}'\n")
    trivy.chmod(0o755)
    digest = fake.add_image("team-a/app", "1.0", {"config": {"User": "app"}})
    settings = _settings(sqlite_url, fake, vulns={"scanner": "trivy", "trivy_path": str(trivy)})
    client, rt = await app_client(settings)
    shown = await _announced(rt, client, notification("team-a/app", digest, "1.0"))
    first = json.loads(report.read_text())["Results"][0]["Vulnerabilities"][0]
    assert first["VulnerabilityID"] in shown and first["PkgName"] in shown
