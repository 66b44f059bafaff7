"""Harbor's own scanner: SCANNING_COMPLETED fetches the report from the configured Harbor and its
vulnerabilities join the image's findings, each posted once."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WEBHOOK_SECRET, make_settings, slack_section
from tests.support.fake_registry import FakeRegistry
from tests.support.slack_standin import SlackStandIn

REPORT = (Path(__file__).parent / "fixtures/reports/harbor-test-vuln_report-v1.1.json").read_bytes()
WRAPPED = json.dumps(
    {"application/vnd.security.vulnerability.report; version=1.1": json.loads(REPORT)}
).encode()


def harbor_event(kind: str, repository: str, digest: str, tag: str, at: int) -> bytes:
    namespace, _, name = repository.partition("/")
    return json.dumps(
        {
            "type": kind,
            "occur_at": at,
            "operator": "admin",
            "event_data": {
                "resources": [
                    {
                        "digest": digest,
                        "tag": tag,
                        "resource_url": f"evil.example/{repository}:{tag}",
                    }
                ],
                "repository": {
                    "name": name,
                    "namespace": namespace,
                    "repo_full_name": repository,
                    "repo_type": "private",
                },
            },
        }
    ).encode()


@pytest.fixture
async def fake() -> AsyncIterator[FakeRegistry]:
    f = FakeRegistry()
    await f.start()
    yield f
    await f.stop()


async def test_scan_completed_reports_harbor_findings_once(  # type: ignore[no-untyped-def]
    app_client, sqlite_url: str, slack: SlackStandIn, fake: FakeRegistry
) -> None:
    repository = "library/team-a/app"
    digest = fake.add_image(repository, "1.0", {"config": {"User": "app"}})
    fake.harbor_reports[digest] = WRAPPED
    settings = make_settings(
        sqlite_url,
        slack=slack_section(slack),
        registries=[
            {
                "name": "harbor",
                "kind": "harbor",
                "url": fake.url,
                "username": "robot",
                "password": "pw",
                "webhook_secret": WEBHOOK_SECRET,
            }
        ],
        teams=[{"name": "team-a", "channel": "#team-a", "repositories": ["library/team-a/*"]}],
    )
    client, _ = await app_client(settings)
    headers: dict[str, Any] = {"Authorization": WEBHOOK_SECRET, "Content-Type": "application/json"}
    for at in (1700000000, 1700000100):  # Harbor rescans: the second report changes nothing
        body = harbor_event("SCANNING_COMPLETED", repository, digest, "1.0", at)
        assert (
            await client.post("/hooks/registry/harbor", data=body, headers=headers)
        ).status == 202
    [post] = await slack.wait_for("chat.postMessage", 1, timeout=10)
    shown = json.dumps(post.args["blocks"])
    expected = json.loads(REPORT)["vulnerabilities"][0]
    assert expected["id"] in shown and expected["package"] in shown
    path, auth = fake.harbor_requests[0]
    assert "/repositories/team-a%252Fapp/" in path  # Harbor's double-encoded repository name
    assert auth == "Basic " + base64.b64encode(b"robot:pw").decode()
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert all("evil.example" not in p for p, _ in fake.harbor_requests)
