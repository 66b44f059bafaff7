"""Known vulnerabilities end to end: an advisory imported, an image pushed to the real registry,
the finding with its fixed version in Slack; a later advisory "found after deployment"."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

import handlers
from bot.app import build, web_app
from bot.findings.recheck import recheck_images
from bot.store import inbox
from bot.store.db import Database
from bot.vulns import store as advisories
from bot.vulns.osv import load_path
from handlers.cli import main
from tests.conftest import WEBHOOK_SECRET, make_settings, slack_section
from tests.support.oci import ImageSpec, write_layout
from tests.support.services import free_port, skopeo_push, start_registry
from tests.support.slack_standin import SlackStandIn

pytestmark = pytest.mark.services

APK_DB = (
    b"P:musl\nV:1.2.4_git20230717-r4\no:musl\n\n"
    b"P:libcrypto3\nV:3.1.4-r5\no:openssl\n\n"
    b"P:libssl3\nV:3.1.4-r5\no:openssl\n\n"
    b"P:zlib\nV:1.3.1-r0\no:zlib\n\n"
)
OS_RELEASE = b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\n'


def advisory(vuln_id: str, package: str, fixed: str, score: str) -> dict[str, Any]:
    return {
        "id": vuln_id,
        "modified": "2026-11-30T00:00:00Z",
        "summary": f"{package} flaw",
        "affected": [
            {
                "package": {"ecosystem": "Alpine:v3.19", "name": package},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}
                ],
            }
        ],
        "severity": [{"type": "CVSS_V3", "score": score}],
    }


CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
MEDIUM = "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:L/A:N"


@pytest.fixture
async def bot(tmp_path: Path, sqlite_url: str, slack: SlackStandIn) -> AsyncIterator[Any]:
    port = free_port()
    registry = start_registry(tmp_path / "reg", f"http://127.0.0.1:{port}/hooks/registry/local")
    settings = make_settings(
        sqlite_url,
        slack=slack_section(slack),
        registries=[
            {
                "name": "local",
                "kind": "distribution",
                "url": registry.url,
                "webhook_secret": WEBHOOK_SECRET,
            }
        ],
        teams=[{"name": "team-a", "channel": "#team-a", "repositories": ["team-a/*"]}],
    )
    runtime = build(settings, handlers.EDGES)
    server = TestServer(web_app(runtime), host="127.0.0.1", port=port)
    await server.start_server()
    yield registry, runtime, settings
    registry.stop()
    await server.close()


async def test_pushed_image_with_a_vulnerable_package_names_the_fix_and_later_advisories_follow(
    bot: Any, slack: SlackStandIn, tmp_path: Path, sqlite_url: str
) -> None:
    registry, runtime, settings = bot
    feed = tmp_path / "osv"
    feed.mkdir()
    (feed / "CVE-2026-1111.json").write_text(
        json.dumps(advisory("CVE-2026-1111", "openssl", "3.1.4-r6", CRITICAL))
    )
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "{sqlite_url}"\n')
    assert (
        await asyncio.to_thread(main, ["vulndb", "import", str(feed), "--config", str(config)]) == 0
    )
    # Importing the same feed again changes nothing.
    db = Database(settings.database)
    async with db.transaction() as s:
        again = await advisories.import_records(s, load_path(feed))
    assert (again.added, again.updated, again.unchanged) == (0, 0, 1)

    spec = ImageSpec(
        user="10001", files={"etc/os-release": OS_RELEASE, "lib/apk/db/installed": APK_DB}
    )
    write_layout(tmp_path / "layout", {"1.0": spec})
    skopeo_push(tmp_path / "layout", "1.0", f"{registry.host}/team-a/api:1.0")
    [post] = await slack.wait_for("chat.postMessage", 1, timeout=10)
    shown = json.dumps(post.args["blocks"])
    assert "CVE-2026-1111" in shown and "3.1.4-r6" in shown and "CRITICAL" in shown

    # A new advisory for a package already deployed: the team hears of it without a push.
    (feed / "CVE-2026-2222.json").write_text(
        json.dumps(advisory("CVE-2026-2222", "zlib", "1.3.1-r1", MEDIUM))
    )
    async with db.transaction() as s:
        await advisories.import_records(s, load_path(feed))
    assert await recheck_images(settings, db) == 1
    assert await recheck_images(settings, db) == 0  # and only once
    await runtime.delivery.run_once()  # what recheck owes, now rather than at the next poll
    posts = await slack.wait_for("chat.postMessage", 2, timeout=10)
    late = json.dumps(posts[-1].args["blocks"])
    assert "Found after deployment" in late and "CVE-2026-2222" in late
    assert "CVE-2026-1111" not in late
    async with runtime.core.db.transaction() as s:
        assert (await inbox.counts(s)).get("failed") is None
    await db.dispose()
