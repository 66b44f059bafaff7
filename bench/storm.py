"""A push storm: 200 pushes of 20 repositories, and how many Slack messages they become.

Issue 5's goal is at most one message per repository per coalescing window; this prints the
messages posted per 100 pushes, counting top-level posts and thread replies.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

import handlers  # noqa: E402
from bot.app import build, web_app  # noqa: E402
from bot.store import inbox, outbox  # noqa: E402
from bot.store.db import migrate  # noqa: E402
from tests.conftest import WEBHOOK_SECRET, make_settings, slack_section  # noqa: E402
from tests.support.fake_registry import FakeRegistry  # noqa: E402
from tests.support.slack_standin import SlackStandIn  # noqa: E402

PUSHES, REPOS, WINDOW = 200, 20, 3.0


async def storm(url: str) -> int:
    slack, fake = SlackStandIn(epoch=time.time()), FakeRegistry()
    await slack.start()
    await fake.start()
    settings = make_settings(
        url,
        slack=slack_section(slack, coalesce_seconds=WINDOW),
        registries=[
            {
                "name": "local",
                "kind": "distribution",
                "url": fake.url,
                "webhook_secret": WEBHOOK_SECRET,
            }
        ],
        teams=[{"name": "t", "channel": "#t", "repositories": ["storm/*"]}],
    )
    runtime = build(settings, handlers.EDGES)
    client = TestClient(TestServer(web_app(runtime)))
    await client.start_server()
    started = time.perf_counter()
    for i in range(PUSHES):
        repo = f"storm/svc{i % REPOS}"
        digest = fake.add_image(repo, f"1.{i}", {"config": {"User": ""}})
        body = {
            "events": [
                {
                    "id": f"e{i}",
                    "action": "push",
                    "actor": {},
                    "target": {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "repository": repo,
                        "digest": digest,
                        "tag": f"1.{i}",
                    },
                }
            ]
        }
        resp = await client.post(
            "/hooks/registry/local",
            data=json.dumps(body),
            headers={
                "Authorization": f"Bearer {WEBHOOK_SECRET}",
                "Content-Type": "application/json",
            },
        )
        assert resp.status == 202
    pushed = time.perf_counter() - started
    for _ in range(600):
        async with runtime.core.db.transaction() as s:
            done = (await inbox.counts(s)).get("done", 0)
            owed = await outbox.pending_count(s)
        if done == PUSHES and owed == 0:
            break
        await asyncio.sleep(0.05)
    posts = slack.calls_to("chat.postMessage")
    top = [c for c in posts if not c.args.get("thread_ts")]
    print(f"{PUSHES} pushes of {REPOS} repositories in {pushed:.1f} s, window {WINDOW:g} s")
    print(f"top-level messages: {len(top)}, thread replies: {len(posts) - len(top)}")
    print(f"messages posted per 100 pushes: {len(posts) * 100 / PUSHES:.1f}")
    await client.close()
    await slack.stop()
    await fake.stop()
    return 0


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="crowsnest-storm-"))
    url = f"sqlite+aiosqlite:///{work / 'storm.db'}"
    migrate(url)
    return asyncio.run(storm(url))


if __name__ == "__main__":
    sys.exit(main())
