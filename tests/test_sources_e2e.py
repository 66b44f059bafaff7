"""Each registry kind, from its real payload through intake, the checks and the Slack stand-in."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from bot.model.events import ImagePushed
from handlers.registry.intake import PROVIDERS
from tests.conftest import WEBHOOK_SECRET, make_settings, slack_section
from tests.support.fake_registry import FakeRegistry
from tests.support.slack_standin import SlackStandIn

FIXTURES = Path(__file__).parent / "fixtures" / "registry"

# kind -> one real (or, where no public sample has a full digest, hand-made) push payload
CASES = {
    "distribution": "distribution/push.json",
    "gitlab": "distribution/push__docker-v2s2.json",
    "harbor": "harbor/push_artifact__zulip.json",
    "dockerhub": "dockerhub/push__doc.json",
    "ghcr": "ghcr/registry_package-updated__handmade-container-tag.json",
    "quay": "quay/repo_push__keel-tags-list.json",
    "ecr": "ecr/image_action-push__handmade-full-digest.json",
    "artifact-registry": "artifact-registry/envelope__handmade-insert-full-digest.json",
}


def _headers(kind: str, fixture: Path, body: bytes) -> tuple[dict[str, str], str]:
    """How each kind presents the secret (CONTRACT.md), and the query string to use."""
    headers = {"Content-Type": "application/json"}
    sibling = fixture.with_suffix(".headers.json")
    if sibling.exists() and kind == "ghcr":
        headers |= {
            k: v
            for k, v in json.loads(sibling.read_text()).items()
            if k.lower().startswith("x-github")
        }
    if kind in ("distribution", "gitlab", "ecr"):
        headers["Authorization"] = f"Bearer {WEBHOOK_SECRET}"
    elif kind == "harbor":
        headers["Authorization"] = WEBHOOK_SECRET
    elif kind == "ghcr":
        mac = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={mac}"
    query = f"?token={WEBHOOK_SECRET}" if kind in ("dockerhub", "quay", "artifact-registry") else ""
    return headers, query


def _rewrite(kind: str, body: bytes, old: str, new: str) -> bytes:
    if kind != "artifact-registry":
        return body.replace(old.encode(), new.encode())
    envelope = json.loads(body)  # the digest sits inside Pub/Sub's base64 message.data
    data = base64.b64decode(envelope["message"]["data"]).replace(old.encode(), new.encode())
    envelope["message"]["data"] = base64.b64encode(data).decode()
    return json.dumps(envelope).encode()


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_real_push_payload_reaches_the_team_channel(  # type: ignore[no-untyped-def]
    kind: str, app_client, sqlite_url: str, slack: SlackStandIn
) -> None:
    fixture = FIXTURES / CASES[kind]
    body = fixture.read_bytes()
    headers, query = _headers(kind, fixture, body)
    parsed = PROVIDERS[kind].parse(headers, body, "src")  # type: ignore[index]
    pushes = [e for e in parsed.events if isinstance(e, ImagePushed)]
    assert pushes, "the case must be a push"

    fake = FakeRegistry()
    await fake.start()
    try:
        # Host every pushed image; a payload digest becomes the digest the fake really serves.
        for push in pushes:
            digest = fake.add_image(push.repository, push.tag or "untagged", {"config": {}})
            if push.digest:
                body = _rewrite(kind, body, push.digest, digest)
        headers, query = _headers(kind, fixture, body)  # re-sign the rewritten body
        settings = make_settings(
            sqlite_url,
            slack=slack_section(slack),
            registries=[
                {"name": "src", "kind": kind, "url": fake.url, "webhook_secret": WEBHOOK_SECRET}
            ],
            teams=[{"name": "t", "channel": "#t", "repositories": ["*", "*/*", "*/*/*"]}],
        )
        client, _ = await app_client(settings)
        resp = await client.post(f"/hooks/registry/src{query}", data=body, headers=headers)
        assert resp.status == 202, await resp.text()

        calls = await slack.wait_for("chat.postMessage", len(pushes), timeout=10)
        await asyncio.sleep(0.1)
        assert len(slack.calls_to("chat.postMessage")) == len(pushes)
        for push in pushes:
            assert any(push.repository in json.dumps(c.args["blocks"]) for c in calls)
            assert all(c.args["channel"] == "#t" for c in calls)
        manifest_requests = [r for r in fake.requests if "/manifests/" in r]
        assert manifest_requests, "the image was fetched from the configured registry"
    finally:
        await fake.stop()


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_wrong_secret_is_refused_for_every_kind(  # type: ignore[no-untyped-def]
    kind: str, app_client, sqlite_url: str
) -> None:
    settings = make_settings(
        sqlite_url,
        worker={"concurrency": 0},
        registries=[
            {
                "name": "src",
                "kind": kind,
                "url": "http://127.0.0.1:9",
                "webhook_secret": "another-secret",
            }
        ],
    )
    client, _ = await app_client(settings)
    fixture = FIXTURES / CASES[kind]
    body = fixture.read_bytes()
    headers, query = _headers(kind, fixture, body)
    resp = await client.post(f"/hooks/registry/src{query}", data=body, headers=headers)
    assert resp.status == 401
    assert "error" in await resp.json()
