"""Falco runtime alerts: intake, routing by namespace, correlation across pods, paging."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import handlers
from bot.app import build, web_app
from bot.store import inbox, outbox
from handlers.falco import MalformedPayload, parse
from tests.conftest import make_settings, slack_section
from tests.support.settle import settle
from tests.support.slack_standin import SlackStandIn

FIXTURES = Path(__file__).parent / "fixtures" / "falco"
TOKEN = "falco-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.t


def event(
    rule: str,
    pod: str,
    *,
    ns: str = "payments",
    priority: str = "Warning",
    output: str = "something odd",
    n: int = 0,
) -> bytes:
    return json.dumps(
        {
            "uuid": f"{rule}-{pod}-{n}",
            "rule": rule,
            "priority": priority,
            "output": output,
            "time": "2026-12-01T09:00:00.000000000Z",
            "source": "syscall",
            "tags": ["container"],
            "output_fields": {
                "k8s.ns.name": ns,
                "k8s.pod.name": pod,
                "container.image.repository": "registry.local/payments/api",
            },
        }
    ).encode()


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_real_falco_outputs_parse(name: str) -> None:
    alert = parse({}, (FIXTURES / name).read_bytes())
    assert alert.rule and alert.priority and alert.output
    assert alert.delivery_id.startswith("sha256:")  # plain Falco sends no uuid


def test_k8s_fields_become_namespace_pod_and_workload() -> None:
    alert = parse({}, (FIXTURES / "elastic-read_sensitive_file_untrusted-k8s.json").read_bytes())
    assert (alert.namespace, alert.pod) == ("kubernetes-ns", "kubernetes-pod-1")
    alert = parse({}, event("r", "api-7d9f8b6c5d-x2x9z"))
    assert alert.workload == "api"


@pytest.mark.parametrize("body", [b"{", b"{}", b'{"rule": "x"}', b"[" * 10000 + b"]" * 10000])
def test_malformed_falco_events_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        parse({}, body)


@pytest.fixture
async def falco(aiohttp_client: Callable[..., Any], sqlite_url: str) -> AsyncIterator[Any]:
    slack = SlackStandIn(epoch=time.time())
    await slack.start()
    clock = Clock()
    settings = make_settings(
        sqlite_url,
        slack=slack_section(slack),
        falco={"token": TOKEN},
        teams=[
            {
                "name": "payments",
                "channel": "#payments",
                "namespaces": ["payments"],
                "oncall": "SONCALL1",
            }
        ],
    )
    runtime = build(settings, handlers.EDGES, clock=clock)
    client = await aiohttp_client(web_app(runtime))

    client.slack, client.clock = slack, clock
    client.settle = lambda: settle(runtime.core.db)
    yield client
    await slack.stop()


async def test_token_is_required_when_configured(falco: Any) -> None:
    plain = {"Content-Type": "application/json"}
    assert (await falco.post("/hooks/falco", data=event("r", "p"), headers=plain)).status == 401
    bad = {**AUTH, "Authorization": "Bearer nope"}
    assert (await falco.post("/hooks/falco", data=event("r", "p"), headers=bad)).status == 401
    resp = await falco.post("/hooks/falco", data=b"{", headers=AUTH)
    assert resp.status == 400 and "error" in await resp.json()


async def test_same_rule_in_many_pods_is_one_correlated_alert(falco: Any) -> None:
    for i in range(14):
        body = event("Outbound connection to C2", f"svc{i % 5}-7d9f8b6c5d-pod{i:02d}", n=i)
        assert (await falco.post("/hooks/falco", data=body, headers=AUTH)).status == 202
    await falco.settle()
    posts = falco.slack.calls_to("chat.postMessage")
    assert len([p for p in posts if not p.args.get("thread_ts")]) == 1
    final = falco.slack.messages["#payments"][0]
    headline = final["blocks"][0]["text"]["text"]
    assert headline == (
        "Correlated: Outbound connection to C2 in 14 pods across 5 services in 10 minutes"
    )


async def test_redelivered_event_counts_once(falco: Any) -> None:
    for _ in range(3):
        await falco.post("/hooks/falco", data=event("r", "api-1", n=1), headers=AUTH)
    await falco.settle()
    message = falco.slack.messages["#payments"][0]
    assert "*Events* 1" in json.dumps(message["blocks"])


async def test_mining_rule_is_critical_and_pages_with_ack(falco: Any) -> None:
    body = event(
        "Detect outbound connections to common miner pool ports",
        "api-1",
        priority="Notice",
        output="connection to stratum+tcp://pool.example:3333",
    )
    await falco.post("/hooks/falco", data=body, headers=AUTH)
    await falco.settle()
    [post] = falco.slack.calls_to("chat.postMessage")
    blocks = json.dumps(post.args["blocks"])
    assert "CRITICAL" in blocks and "alert.ack" in blocks


async def test_after_the_window_a_new_alert_is_posted(falco: Any) -> None:
    await falco.post("/hooks/falco", data=event("r", "a-1"), headers=AUTH)
    await falco.settle()
    falco.clock.t += timedelta(minutes=11)
    await falco.post("/hooks/falco", data=event("r", "a-2"), headers=AUTH)
    await falco.settle()
    assert len(falco.slack.calls_to("chat.postMessage")) == 2


async def test_unowned_namespace_goes_to_fallback(falco: Any) -> None:
    await falco.post("/hooks/falco", data=event("r", "x-1", ns="other"), headers=AUTH)
    await falco.settle()
    [post] = falco.slack.calls_to("chat.postMessage")
    assert post.args["channel"] == "#fallback"


async def test_falco_storm_is_one_correlated_alert_with_few_updates(
    aiohttp_client: Callable[..., Any], sqlite_url: str
) -> None:
    slack = SlackStandIn(epoch=time.time())
    await slack.start()
    clock = Clock()
    settings = make_settings(
        sqlite_url,
        slack=slack_section(slack, channel_interval=1.0),
        falco={"token": TOKEN},
        teams=[{"name": "payments", "channel": "#payments", "namespaces": ["payments"]}],
    )
    runtime = build(settings, handlers.EDGES, clock=clock)
    client = await aiohttp_client(web_app(runtime))
    for i in range(300):
        clock.t = datetime(2026, 12, 1, 9, 0, tzinfo=UTC) + timedelta(seconds=i)  # 5 minutes
        body = event("Terminal shell in container", f"svc{i % 8}-7d9f8b6c5d-p{i % 40:04d}", n=i)
        assert (await client.post("/hooks/falco", data=body, headers=AUTH)).status == 202
    for _ in range(400):
        async with runtime.core.db.transaction() as s:
            counts = await inbox.counts(s)
            owed = await outbox.pending_count(s)
        if set(counts) == {"done"} and not owed:
            break
        await asyncio.sleep(0.05)
    posts = slack.calls_to("chat.postMessage")
    updates = slack.calls_to("chat.update")
    assert len(posts) == 1
    assert len(updates) <= 10, len(updates)
    final = slack.messages["#payments"][0]
    assert final["blocks"][0]["text"]["text"] == (
        "Correlated: Terminal shell in container in 40 pods across 8 services in 10 minutes"
    )
    assert "*Events* 300" in json.dumps(final["blocks"])
    await slack.stop()
