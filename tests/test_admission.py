"""POST /hooks/k8s/admission: AdmissionReview in, same uid out; audit warns, enforce denies."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import handlers
from bot.app import build, web_app
from bot.checks.policy import RULES
from bot.models import Suppression, TrackedFinding
from bot.store import inbox, outbox
from tests.conftest import ADMISSION_AUTH, make_settings, slack_section
from tests.support.slack_standin import SlackStandIn

REVIEW = json.loads(
    (Path(__file__).parent / "fixtures/kubernetes/kube-review-deployment-create.json").read_text()
)


def privileged_review(uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002") -> dict[str, Any]:
    review = copy.deepcopy(REVIEW)
    review["request"]["uid"] = uid
    review["request"]["namespace"] = "payments"
    template = review["request"]["object"]["spec"]["template"]["spec"]
    template["containers"][0]["securityContext"] = {"privileged": True}
    return review


@pytest.fixture
async def webhook(aiohttp_client: Callable[..., Any], sqlite_url: str) -> AsyncIterator[Any]:
    slack = SlackStandIn(epoch=time.time())
    await slack.start()

    async def start(mode: str) -> Any:
        settings = make_settings(
            sqlite_url,
            slack=slack_section(slack),
            admission={"mode": mode, "cluster": "prod"},
            teams=[{"name": "payments", "channel": "#payments", "namespaces": ["payments"]}],
            registries=[{"name": "local", "kind": "distribution", "url": "http://127.0.0.1:9"}],
        )
        runtime = build(settings, handlers.EDGES)
        client = await aiohttp_client(web_app(runtime))
        client.runtime, client.slack = runtime, slack
        return client

    yield start
    await slack.stop()


async def _review(client: Any, review: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post("/hooks/k8s/admission", json=review, headers=ADMISSION_AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    assert body["response"]["uid"] == review["request"]["uid"]
    return dict(body["response"])


async def test_audit_allows_warns_and_posts_findings_to_the_team(webhook: Any) -> None:
    client = await webhook("audit")
    answer = await _review(client, privileged_review())
    assert answer["allowed"] is True
    assert any("pss-baseline/privileged" in w for w in answer["warnings"])
    [post] = await client.slack.wait_for("chat.postMessage", 1, timeout=10)
    assert post.args["channel"] == "#payments"
    shown = json.dumps(post.args["blocks"])
    assert "pss-baseline/privileged" in shown and "finding.approve" in shown


async def test_enforce_denies_with_each_violation_and_its_fix(webhook: Any) -> None:
    client = await webhook("enforce")
    answer = await _review(client, privileged_review())
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 403
    message = answer["status"]["message"]
    assert "privileged" in message and "securityContext" in message


async def test_enforce_allows_what_an_approve_decision_covers(webhook: Any) -> None:
    client = await webhook("enforce")
    first = await _review(client, privileged_review())
    assert first["allowed"] is False
    now = datetime.now(UTC)
    async with client.runtime.core.db.transaction() as s:
        for check in RULES:
            s.add(
                Suppression(
                    kind="approve",
                    scope="repository",
                    team="payments",
                    registry_name="k8s:prod",
                    repository="payments/deployment/nginx",
                    check_id=check,
                    package=None,
                    reason="vendor agent needs it",
                    decided_by="UAPPROVER1",
                    created_at=now,
                )
            )
    again = await _review(client, privileged_review("second-uid"))
    assert again["allowed"] is True, again


async def test_enforce_denies_an_image_with_an_unapproved_critical_fixable_finding(
    webhook: Any,
) -> None:
    client = await webhook("enforce")
    review = copy.deepcopy(REVIEW)
    review["request"]["uid"] = "vuln-uid"
    spec = review["request"]["object"]["spec"]["template"]["spec"]
    spec["containers"][0]["image"] = "127.0.0.1:9/payments/api@sha256:" + "a" * 64
    now = datetime.now(UTC)
    async with client.runtime.core.db.transaction() as s:
        s.add(
            TrackedFinding(
                registry_name="local",
                repository="payments/api",
                check_id="CVE-2024-0001",
                package="openssl 3.0.1",
                severity="critical",
                title="bad",
                detail="",
                remediation="",
                fixed_version="3.0.2",
                status="open",
                first_seen_at=now,
                last_seen_at=now,
                last_seen_digest="sha256:" + "a" * 64,
            )
        )
    client.runtime.core.settings.policy.__dict__["default_level"] = "privileged"
    answer = await _review(client, review)
    assert answer["allowed"] is False
    assert "CVE-2024-0001" in answer["status"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b'{"kind": "AdmissionReview"}',
        b'{"kind": "AdmissionReview", "request": {"uid": 5}}',
    ],
)
async def test_malformed_reviews_get_400(webhook: Any, body: bytes) -> None:
    client = await webhook("audit")
    resp = await client.post(
        "/hooks/k8s/admission",
        data=body,
        headers={"Content-Type": "application/json", **ADMISSION_AUTH},
    )
    assert resp.status == 400 and "error" in await resp.json()


async def test_same_spec_admitted_twice_is_one_message(webhook: Any) -> None:
    client = await webhook("audit")
    await _review(client, privileged_review("a"))
    await _review(client, privileged_review("b"))
    await client.slack.wait_for("chat.postMessage", 1, timeout=10)
    for _ in range(100):
        async with client.runtime.core.db.transaction() as s:
            counts = await inbox.counts(s)
            if set(counts) == {"done"} and not await outbox.pending_count(s):
                break
        await asyncio.sleep(0.05)
    assert len(client.slack.calls_to("chat.postMessage")) == 1
