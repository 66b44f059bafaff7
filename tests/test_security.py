"""Security properties at the edges: forged Slack requests change nothing, webhook secrets are
compared in constant time, secrets never reach the logs, approvals cannot be smuggled through a
crafted modal submission, and hostile bodies (deep nesting, 50 MB) are refused cheaply."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

import handlers
from bot.app import Runtime, build, web_app
from bot.config import Registry, RegistryKind
from bot.store import outbox
from bot.store.models import DecisionRow, InboxEvent, SlackMessage, Suppression, TrackedFinding
from handlers import falco
from handlers.cli import JsonFormatter, setup_logging
from handlers.registry.errors import Unauthorized
from handlers.registry.intake import PROVIDERS
from tests.conftest import (
    ADMISSION_AUTH,
    FALCO_AUTH,
    SIGNING_SECRET,
    WEBHOOK_SECRET,
    make_settings,
    slack_section,
)
from tests.support.fake_registry import FakeRegistry
from tests.support.settle import settle
from tests.support.slack_standin import (
    SlackStandIn,
    block_actions_body,
    signed_headers,
    slash_command_body,
    view_submission_body,
)

GITHUB_TOKEN = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
ROOT_WITH_TOKEN = {"config": {"User": "", "Env": [f"GITHUB_TOKEN={GITHUB_TOKEN}"]}}
APPROVER, BOSS, MEMBER, OTHER = "UAPPROVER1", "UBOSS1", "UMEMBER1", "UOTHER1"
OCI = "application/vnd.oci.image.manifest.v1+json"


# --------------------------------------------------------------------------- a running bot


@dataclass
class Bot:
    client: TestClient[Any, Any]
    runtime: Runtime
    slack: SlackStandIn
    fake: FakeRegistry
    pushes: int = 0

    async def push(self, repository: str, tag: str, config: dict[str, Any]) -> None:
        digest = self.fake.add_image(repository, tag, config)
        self.pushes += 1
        event = {
            "id": f"ev-{self.pushes}",
            "action": "push",
            "target": {"mediaType": OCI, "repository": repository, "digest": digest, "tag": tag},
        }
        resp = await self.client.post(
            "/hooks/registry/local",
            json={"events": [event]},
            headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"},
        )
        assert resp.status == 202

    async def settle(self) -> None:
        await settle(self.runtime.core.db)

    async def finding(self, repository: str, check_id: str) -> TrackedFinding:
        async with self.runtime.core.db.transaction() as s:
            rows = await s.execute(
                select(TrackedFinding).where(
                    TrackedFinding.repository == repository, TrackedFinding.check_id == check_id
                )
            )
            return rows.scalar_one()

    async def state(self) -> tuple[Any, ...]:
        """Everything a decision would change: decisions, suppressions, assignees, the outbox."""
        async with self.runtime.core.db.transaction() as s:
            decisions = [
                (d.action, d.actor, d.finding_id)
                for d in (await s.execute(select(DecisionRow))).scalars()
            ]
            suppressions = [x.id for x in (await s.execute(select(Suppression))).scalars()]
            tracked = [
                (t.id, t.assignee, t.due_at, t.status)
                for t in (await s.execute(select(TrackedFinding))).scalars()
            ]
            owed = [
                (m.key, m.status, m.text) for m in (await s.execute(select(SlackMessage))).scalars()
            ]
        calls = [
            (c.method, json.dumps(c.args, sort_keys=True, default=str)) for c in self.slack.calls
        ]
        return decisions, suppressions, tracked, owed, calls

    async def post_slack(self, body: bytes, headers: dict[str, str]) -> Any:
        return await self.client.post("/slack/events", data=body, headers=headers)


@pytest.fixture
async def bot(aiohttp_client: Callable[..., Any], sqlite_url: str) -> AsyncIterator[Bot]:
    slack = SlackStandIn(epoch=time.time())
    await slack.start()
    fake = FakeRegistry()
    await fake.start()
    settings = make_settings(
        sqlite_url,
        slack=slack_section(slack),
        registries=[
            {
                "name": "local",
                "kind": "distribution",
                "url": fake.url,
                "webhook_secret": WEBHOOK_SECRET,
            }
        ],
        teams=[
            {
                "name": "team-a",
                "channel": "#team-a",
                "repositories": ["team-a/*"],
                "approvers": [APPROVER],
                "members": [MEMBER],
            },
            {
                "name": "team-b",
                "channel": "#team-b",
                "repositories": ["team-b/*"],
                "approvers": [BOSS],
            },
        ],
    )
    runtime = build(settings, handlers.EDGES)
    client = await aiohttp_client(web_app(runtime))
    bot = Bot(client, runtime, slack, fake)
    await bot.push("team-a/app", "1.0", ROOT_WITH_TOKEN)
    await bot.push("team-b/svc", "1.0", ROOT_WITH_TOKEN)
    await bot.settle()
    yield bot
    await slack.stop()
    await fake.stop()


# --------------------------------------------------------------------------- forged Slack requests


def _forgeries(body: bytes) -> dict[str, dict[str, str]]:
    now = int(time.time())
    good = signed_headers(body, SIGNING_SECRET)
    old = signed_headers(body, SIGNING_SECRET, timestamp=now - 6 * 60)
    return {
        "wrong signature": signed_headers(body, "not-the-signing-secret"),
        "no signature": {k: v for k, v in good.items() if k != "X-Slack-Signature"},
        "no timestamp": {k: v for k, v in good.items() if k != "X-Slack-Request-Timestamp"},
        "no headers": {"Content-Type": good["Content-Type"]},
        "timestamp 6 minutes old": old,
        "replay: new timestamp, old signature": {**old, "X-Slack-Request-Timestamp": str(now)},
        "signature of another body": {**signed_headers(body + b"&x=1", SIGNING_SECRET)},
        "empty signature": {**good, "X-Slack-Signature": ""},
        "signature without v0=": {**good, "X-Slack-Signature": good["X-Slack-Signature"][3:]},
    }


async def test_forged_slack_requests_are_401_and_change_nothing(bot: Bot) -> None:
    finding = await bot.finding("team-a/app", "runs-as-root")
    channel = bot.slack.channel_id("#team-a")
    requests = {
        "patch click": block_actions_body(
            action_id="finding.patch",
            value=str(finding.id),
            user_id=MEMBER,
            channel=channel,
            message_ts=bot.slack.messages["#team-a"][0]["ts"],
        ),
        "approve submission": view_submission_body(
            callback_id="decision.approve",
            private_metadata=json.dumps({"finding": finding.id}),
            user_id=OTHER,
            values={"reason": {"value": {"type": "plain_text_input", "value": "forged"}}},
        ),
        "slash command": slash_command_body(
            command="/crowsnest", text="findings", user_id=OTHER, channel_id=channel
        ),
    }
    before = await bot.state()
    for what, body in requests.items():
        for forgery, headers in _forgeries(body).items():
            resp = await bot.post_slack(body, headers)
            assert resp.status == 401, f"{what} with {forgery}: {resp.status}"
    assert await bot.state() == before

    # The same requests, signed properly, do act: the forgeries were refused for their forgery.
    resp = await bot.post_slack(
        requests["patch click"], signed_headers(requests["patch click"], SIGNING_SECRET)
    )
    assert resp.status == 200
    decisions, *_ = await bot.state()
    assert decisions == [("patch", MEMBER, finding.id)]


# --------------------------------------------------------------------------- constant-time secrets


def _credentials(
    kind: RegistryKind, secret: str, body: bytes
) -> tuple[dict[str, str], dict[str, str]]:
    if kind in (RegistryKind.DISTRIBUTION, RegistryKind.GITLAB, RegistryKind.ECR):
        return {"Authorization": f"Bearer {secret}"}, {}
    if kind is RegistryKind.HARBOR:
        return {"Authorization": secret}, {}
    if kind is RegistryKind.GHCR:
        mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return {"X-Hub-Signature-256": f"sha256={mac}"}, {}
    return {}, {"token": secret}


class CompareSpy:
    """Stands in for hmac.compare_digest: records the arguments, answers `verdict` or the truth."""

    def __init__(self, real: Callable[[Any, Any], bool]) -> None:
        self.real = real
        self.calls: list[tuple[Any, Any]] = []
        self.verdict: bool | None = None

    def __call__(self, a: Any, b: Any) -> bool:
        self.calls.append((a, b))
        return self.real(a, b) if self.verdict is None else self.verdict


@pytest.fixture
def compare_spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[CompareSpy]:
    spy = CompareSpy(hmac.compare_digest)
    monkeypatch.setattr(hmac, "compare_digest", spy)
    yield spy


@pytest.mark.parametrize("kind", list(RegistryKind))
def test_webhook_secrets_are_compared_with_hmac_compare_digest(
    kind: RegistryKind, compare_spy: CompareSpy
) -> None:
    secret = f"s3cret-for-{kind.value}"
    registry = Registry(name="r", kind=kind, url="https://registry.example", webhook_secret=secret)
    verify = PROVIDERS[kind].verify
    body = b'{"any": "body"}'
    good_headers, good_query = _credentials(kind, secret, body)
    bad_headers, bad_query = _credentials(kind, secret[:-1] + "X", body)

    verify(good_headers, good_query, body, registry)
    assert compare_spy.calls, f"{kind}: the secret was not compared with hmac.compare_digest"
    assert any(
        secret.encode() in bytes(a) + bytes(b) or b"sha256=" in bytes(a)
        for a, b in compare_spy.calls
    )
    with pytest.raises(Unauthorized):
        verify(bad_headers, bad_query, body, registry)

    # compare_digest alone decides: no other comparison lets a request in or keeps it out.
    compare_spy.verdict = False
    with pytest.raises(Unauthorized):
        verify(good_headers, good_query, body, registry)
    compare_spy.verdict = True
    verify(bad_headers, bad_query, body, registry)


def test_falco_token_and_slack_signatures_are_compared_with_hmac_compare_digest(
    compare_spy: CompareSpy,
) -> None:
    falco.verify({"Authorization": "Bearer tok"}, "tok")
    assert compare_spy.calls
    compare_spy.verdict = True
    falco.verify({"Authorization": "Bearer wrong"}, "tok")
    compare_spy.verdict = False
    with pytest.raises(falco.Unauthorized):
        falco.verify({"Authorization": "Bearer tok"}, "tok")

    from slack_sdk.signature import SignatureVerifier

    compare_spy.calls.clear()
    compare_spy.verdict = None
    body = "a=b"
    headers = signed_headers(body.encode(), SIGNING_SECRET)
    verifier = SignatureVerifier(SIGNING_SECRET)
    stamp, signature = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    assert verifier.is_valid(body, stamp, signature)
    assert compare_spy.calls


# --------------------------------------------------------------------------- secrets in logs

BOT_TOKEN_S = "xoxb-4242-4242-S3cr3tB0tT0k3nValue"
SIGNING_S = "5ign1ng5ecretValue0123456789abcd"
REGISTRY_PASSWORD = "Reg1stryPassw0rdValue"
FALCO_TOKEN = "Falc0T0kenValue"
WEBHOOK_SECRETS = {kind: f"Webh00k-{kind.value}-Secret" for kind in RegistryKind}


@pytest.fixture
def production_logging(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """`crowsnest serve`'s own logging setup at DEBUG, its JSON lines going to a stream, plus
    caplog; everything restored afterwards."""
    root = logging.getLogger()
    handlers_before, level_before = root.handlers[:], root.level
    levels = {
        name: logger.level
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    stream = io.StringIO()
    setup_logging("debug")
    [json_handler] = root.handlers
    assert isinstance(json_handler, logging.StreamHandler)
    assert isinstance(json_handler.formatter, JsonFormatter)
    json_handler.setStream(stream)
    caplog.handler.setLevel(logging.DEBUG)
    root.addHandler(caplog.handler)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers_before
        root.setLevel(level_before)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def test_secrets_never_reach_the_logs(
    aiohttp_client: Callable[..., Any],
    sqlite_url: str,
    caplog: pytest.LogCaptureFixture,
    production_logging: io.StringIO,
) -> None:
    slack = SlackStandIn(bot_token=BOT_TOKEN_S, epoch=time.time())
    await slack.start()
    fake = FakeRegistry(auth="basic", credentials=("bot", REGISTRY_PASSWORD))
    await fake.start()
    try:
        registries = [
            {
                "name": "local",
                "kind": "distribution",
                "url": fake.url,
                "username": "bot",
                "password": REGISTRY_PASSWORD,
                "webhook_secret": WEBHOOK_SECRETS[RegistryKind.DISTRIBUTION],
            }
        ] + [
            {
                "name": kind.value,
                "kind": kind.value,
                "url": "http://127.0.0.1:9",
                "webhook_secret": WEBHOOK_SECRETS[kind],
                "timeout": 1,
            }
            for kind in RegistryKind
        ]
        settings = make_settings(
            sqlite_url,
            slack={
                **slack_section(slack),
                "bot_token": BOT_TOKEN_S,
                "signing_secret": SIGNING_S,
                "max_retry_backoff": 0.2,
            },
            registries=registries,
            teams=[{"name": "team-a", "channel": "#team-a", "repositories": ["team-a/*"]}],
            falco={"token": FALCO_TOKEN},
            worker={"max_attempts": 1},
        )
        runtime = build(settings, handlers.EDGES)
        # `crowsnest serve` runs without an access log (`access_log=None`): so does this server.
        client = await aiohttp_client(web_app(runtime), server_kwargs={"access_log": None})
        slack.fail_next("chat.postMessage", 500)
        slack.fail_next("chat.update", 200, error="invalid_auth")

        # A push pulled with basic auth, posted after a 500; one pull that fails (unknown tag).
        digest = fake.add_image("team-a/app", "1.0", ROOT_WITH_TOKEN)
        for n, ref in enumerate((digest, "sha256:" + "0" * 64)):
            event = {
                "id": f"e{n}",
                "action": "push",
                "target": {
                    "mediaType": OCI,
                    "repository": "team-a/app",
                    "digest": ref,
                    "tag": "1.0",
                },
            }
            headers = {"Authorization": f"Bearer {WEBHOOK_SECRETS[RegistryKind.DISTRIBUTION]}"}
            assert (
                await client.post(
                    "/hooks/registry/local", json={"events": [event]}, headers=headers
                )
            ).status == 202
        # Every kind: the right secret with a bad body (400), a wrong secret (401), none (401).
        for kind in RegistryKind:
            body = b'{"not": "a payload"}'
            headers, query = _credentials(kind, WEBHOOK_SECRETS[kind], body)
            resp = await client.post(
                f"/hooks/registry/{kind.value}",
                data=body,
                params=query,
                headers={**headers, "Content-Type": "application/json"},
            )
            assert resp.status == 400, kind
            headers, query = _credentials(kind, WEBHOOK_SECRETS[kind] + "x", body)
            resp = await client.post(
                f"/hooks/registry/{kind.value}",
                data=body,
                params=query,
                headers={**headers, "Content-Type": "application/json"},
            )
            assert resp.status == 401, kind
            resp = await client.post(f"/hooks/registry/{kind.value}", json={"no": "credentials"})
            assert resp.status == 401, kind
        # A Docker Hub push (tag only: resolved against an unreachable registry, so it fails).
        hub = {
            "push_data": {"pushed_at": 1700000000, "pusher": "me", "tag": "1"},
            "repository": {"repo_name": "team-a/hub"},
        }
        resp = await client.post(
            "/hooks/registry/dockerhub",
            json=hub,
            params={"token": WEBHOOK_SECRETS[RegistryKind.DOCKERHUB]},
        )
        assert resp.status == 202
        # Falco with the wrong token, then the right one.
        alert = {
            "rule": "Terminal shell in container",
            "priority": "Warning",
            "time": "2024-01-01T00:00:00Z",
            "output": "shell",
        }
        assert (
            await client.post("/hooks/falco", json=alert, headers={"Authorization": "Bearer nope"})
        ).status == 401
        assert (
            await client.post(
                "/hooks/falco", json=alert, headers={"Authorization": f"Bearer {FALCO_TOKEN}"}
            )
        ).status == 202
        # Slack: a forged request, a signed slash command, a signed click.
        body = slash_command_body(
            command="/crowsnest", text="findings", user_id=OTHER, channel_id="C1"
        )
        assert (
            await client.post("/slack/events", data=body, headers=signed_headers(body, "wrong"))
        ).status == 401
        assert (
            await client.post("/slack/events", data=body, headers=signed_headers(body, SIGNING_S))
        ).status == 200

        for _ in range(200):
            async with runtime.core.db.transaction() as s:
                busy = await s.execute(
                    select(func.count())
                    .select_from(InboxEvent)
                    .where(InboxEvent.status.in_(("pending", "processing")))
                )
                if not busy.scalar_one() and await outbox.pending_count(s) == 0:
                    break
            await asyncio.sleep(0.03)
        assert slack.calls_to("chat.postMessage"), "the scenario should have posted"
    finally:
        await slack.stop()
        await fake.stop()

    logged = caplog.text + "\n" + production_logging.getvalue()
    assert "refused 401 request from registry" in logged and "parked as failed" in logged
    # At DEBUG: slack_sdk logs every request it sends (with the Authorization header redacted).
    assert any(
        r.levelno == logging.DEBUG and r.name.startswith("slack_sdk") for r in caplog.records
    )
    lines = [json.loads(line) for line in production_logging.getvalue().splitlines() if line]
    assert lines and all({"ts", "level", "logger", "msg"} <= line.keys() for line in lines)
    secrets = {
        "bot token": BOT_TOKEN_S,
        "signing secret": SIGNING_S,
        "registry password": REGISTRY_PASSWORD,
        "registry basic auth": base64.b64encode(f"bot:{REGISTRY_PASSWORD}".encode()).decode(),
        "falco token": FALCO_TOKEN,
        "token found in the image": GITHUB_TOKEN,
        **{f"{kind.value} webhook secret": secret for kind, secret in WEBHOOK_SECRETS.items()},
    }
    for what, secret in secrets.items():
        assert secret not in logged, f"the {what} is in the logs"
        assert json.dumps(secret)[1:-1] not in logged


# --------------------------------------------------------------------------- approvals


async def test_non_approver_cannot_approve_through_a_crafted_view_submission(bot: Bot) -> None:
    medium = await bot.finding("team-a/app", "runs-as-root")
    high = await bot.finding("team-a/app", "secret-in-config")
    other_team = await bot.finding("team-b/svc", "secret-in-config")
    assert (medium.severity, high.severity) == ("medium", "high")

    # MEMBER may ignore the medium finding narrowly, so Slack opens the Ignore modal for it...
    message = bot.slack.messages["#team-a"][0]
    click = block_actions_body(
        action_id="finding.ignore",
        value=str(medium.id),
        user_id=MEMBER,
        channel=bot.slack.channel_id("#team-a"),
        message_ts=message["ts"],
        message=message,
    )
    assert (await bot.post_slack(click, signed_headers(click, SIGNING_SECRET))).status == 200
    [opened] = bot.slack.calls_to("views.open")
    assert json.loads(opened.args["view"]["private_metadata"]) == {"finding": medium.id}
    before = await bot.state()

    # ... and the submission is rewritten into an Approve (of this or another team's finding)
    # or a team-wide Ignore, which only approvers may take.
    values = {
        "reason": {"value": {"type": "plain_text_input", "value": "trust me"}},
        "expiry": {"value": {"type": "static_select", "selected_option": {"value": "30"}}},
    }
    for target in (medium, high, other_team):
        for metadata in (
            json.dumps({"finding": target.id}),
            json.dumps({"finding": str(target.id)}),
        ):
            body = view_submission_body(
                callback_id="decision.approve",
                private_metadata=metadata,
                user_id=MEMBER,
                values=values,
            )
            resp = await bot.post_slack(body, signed_headers(body, SIGNING_SECRET))
            assert resp.status == 200
            answer = await resp.json()
            assert answer["response_action"] == "errors", answer
            assert "approvers" in answer["errors"]["reason"]
    for scope, expiry in (("vulnerability", "30"), ("repository", "fix")):
        body = view_submission_body(
            callback_id="decision.ignore",
            private_metadata=opened.args["view"]["private_metadata"],
            user_id=MEMBER,
            values=values
            | {
                "expiry": {
                    "value": {"type": "static_select", "selected_option": {"value": expiry}}
                },
                "scope": {"value": {"type": "radio_buttons", "selected_option": {"value": scope}}},
            },
        )
        answer = await (await bot.post_slack(body, signed_headers(body, SIGNING_SECRET))).json()
        assert answer["response_action"] == "errors"
    # Nothing changed but the audit log, which holds each attempt as refused.
    decisions, *rest = await bot.state()
    assert rest == list(before[1:])
    assert [d for d in decisions if d[0] != "refused"] == before[0]
    assert len([d for d in decisions if d[0] == "refused"]) == 8

    # The modal it was opened for still works, for what MEMBER may decide.
    body = view_submission_body(
        callback_id="decision.ignore",
        private_metadata=opened.args["view"]["private_metadata"],
        user_id=MEMBER,
        values=values
        | {"scope": {"value": {"type": "radio_buttons", "selected_option": {"value": "image"}}}},
    )
    answer = await bot.post_slack(body, signed_headers(body, SIGNING_SECRET))
    assert answer.status == 200 and await answer.text() == ""
    decisions, *_ = await bot.state()
    assert decisions[-1] == ("ignore", MEMBER, medium.id)


# --------------------------------------------------------------------------- hostile bodies

DEEP_ARRAY = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000


@pytest.fixture
async def hostile_client(app_client: Any, sqlite_url: str, slack: SlackStandIn) -> Any:
    settings = make_settings(sqlite_url, slack=slack_section(slack), worker={"concurrency": 0})
    client, _runtime = await app_client(settings)
    return client


ENDPOINTS = [
    pytest.param(
        "/hooks/registry/local", {"Authorization": f"Bearer {WEBHOOK_SECRET}"}, id="registry"
    ),
    pytest.param("/hooks/falco", FALCO_AUTH, id="falco"),
    pytest.param("/hooks/k8s/admission", ADMISSION_AUTH, id="admission"),
    pytest.param("/slack/events", None, id="slack-signed"),
    pytest.param("/slack/events", {}, id="slack-unsigned"),
]


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
@pytest.mark.parametrize(("path", "headers"), ENDPOINTS)
async def test_json_nested_10000_levels_deep_is_a_400(
    hostile_client: Any, path: str, headers: dict[str, str] | None, body: bytes
) -> None:
    if headers is None:
        headers = signed_headers(body, SIGNING_SECRET, content_type="application/json")
    resp = await hostile_client.post(
        path, data=body, headers={"Content-Type": "application/json", **headers}
    )
    if path == "/slack/events" and "X-Slack-Signature" not in headers:
        assert resp.status in (400, 401), await resp.text()
    else:
        assert resp.status == 400, await resp.text()
    assert "error" in await resp.json()


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def _stream_body(
    host: str, port: int, path: str, length: int, headers: dict[str, str]
) -> tuple[int, bytes]:
    """POST `length` bytes announced by Content-Length, written 64 KiB at a time, until the server
    answers. Returns how much was written by then, and the status line and headers."""
    reader, writer = await asyncio.open_connection(host, port)
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {length}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode())
    answer = asyncio.ensure_future(reader.readuntil(b"\r\n\r\n"))
    chunk, sent = b" " * 65536, 0
    try:
        while sent < length and not answer.done():
            writer.write(chunk)
            sent += len(chunk)
            try:
                await asyncio.wait_for(writer.drain(), 0.5)
            except TimeoutError:
                continue  # the server stopped reading: its answer is on the way
        return sent, await asyncio.wait_for(answer, 5)
    except (ConnectionError, asyncio.IncompleteReadError):
        return sent, await asyncio.wait_for(answer, 5)
    finally:
        writer.close()


async def test_a_50_mb_body_is_refused_early_with_413_without_growing_the_process(
    hostile_client: Any,
) -> None:
    length = 50 * 1024 * 1024
    host, port = hostile_client.host, hostile_client.port
    targets = {
        "/hooks/registry/local": {
            "Authorization": f"Bearer {WEBHOOK_SECRET}",
            "Content-Type": "application/json",
        },
        "/hooks/falco": {**FALCO_AUTH, "Content-Type": "application/json"},
        "/hooks/k8s/admission": {**ADMISSION_AUTH, "Content-Type": "application/json"},
        "/slack/events": {"Content-Type": "application/x-www-form-urlencoded"},
    }
    await hostile_client.get("/healthz")  # warm up
    before = _rss_mb()
    for path, headers in targets.items():
        started = time.monotonic()
        sent, head = await _stream_body(host, port, path, length, headers)
        assert head.startswith(b"HTTP/1.1 413"), (path, head[:80])
        # Refused after about the 1 MiB limit (plus socket buffers), not after 50 MB.
        assert sent < 16 * 1024 * 1024, f"{path}: {sent} bytes were taken before the 413"
        assert time.monotonic() - started < 5
    grown = _rss_mb() - before
    assert grown < 60, f"the process grew by {grown:.0f} MB"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xfe\xfd", "application/x-www-form-urlencoded"),
        (b"null", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"{not json", "application/json"),
        (b"payload=%7B%22team%22%3A1%7D", "application/x-www-form-urlencoded"),
        (b"payload=%7B%22user%22%3A1%7D", "application/x-www-form-urlencoded"),
    ],
    ids=["not-utf8", "json-null", "json-array", "bad-json", "team-not-object", "user-not-object"],
)
async def test_unsigned_garbage_to_slack_events_is_refused_not_500(
    hostile_client: Any, body: bytes, content_type: str
) -> None:
    resp = await hostile_client.post(
        "/slack/events", data=body, headers={"Content-Type": content_type}
    )
    assert resp.status in (400, 401), resp.status
