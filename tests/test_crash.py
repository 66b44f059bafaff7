"""`kill -9` in the middle of a burst: every event that got a 202 is processed exactly once."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import BOT_TOKEN, WEBHOOK_SECRET
from tests.support.drain import drained
from tests.support.oci import ImageSpec, write_layout
from tests.support.serve import serve, wait_ready, write_config
from tests.support.services import free_port, skopeo_push, start_registry
from tests.support.slack_standin import SlackStandIn

pytestmark = pytest.mark.services

EVENTS = 500
KILL_AFTER = 200


def _event(tag: str, digest: str) -> bytes:
    return json.dumps(
        {
            "events": [
                {
                    "id": str(uuid.uuid4()),
                    "timestamp": "2026-12-01T19:50:44.167833934Z",
                    "action": "push",
                    "target": {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": digest,
                        "repository": "team-a/app",
                        "tag": tag,
                    },
                    "actor": {},
                }
            ]
        }
    ).encode()


async def test_kill_9_mid_burst_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    registry = start_registry(tmp_path / "registry", None)
    slack = SlackStandIn(bot_token=BOT_TOKEN, epoch=time.time())
    await slack.start()
    digest = write_layout(tmp_path / "layout", {"1": ImageSpec()})["1"]
    skopeo_push(tmp_path / "layout", "1", f"{registry.host}/team-a/app:1")
    port, db = free_port(), tmp_path / "bot.db"
    config, log = tmp_path / "crowsnest.toml", tmp_path / "serve.log"
    write_config(
        config,
        port=port,
        db=db,
        registry_url=registry.url,
        slack_url=slack.api_url,
        slack={"channel_interval": 0, "coalesce_seconds": 0, "retry_backoff": 0.1},
        worker={"concurrency": 4, "poll_interval": 0.1},
    )
    proc = serve(config, log)
    try:
        await wait_ready(port, proc, log)
        acked: set[str] = set()
        sem = asyncio.Semaphore(16)
        killed = asyncio.Event()

        async def send(http: aiohttp.ClientSession, tag: str) -> None:
            async with sem:
                if killed.is_set():
                    return
                try:
                    async with http.post(
                        f"http://127.0.0.1:{port}/hooks/registry/local",
                        data=_event(tag, digest),
                        headers={
                            "Authorization": f"Bearer {WEBHOOK_SECRET}",
                            "Content-Type": "application/json",
                        },
                    ) as r:
                        if r.status == 202:
                            acked.add(tag)
                except aiohttp.ClientError:
                    return
                if len(acked) >= KILL_AFTER and not killed.is_set():
                    killed.set()
                    proc.send_signal(signal.SIGKILL)

        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(send(http, f"t{i}") for i in range(EVENTS)))
        proc.wait(10)
        posted_before_restart = len(slack.calls_to("chat.postMessage"))
        assert killed.is_set() and KILL_AFTER <= len(acked) < EVENTS
        # The kill must land while work was still owed, or this test proves nothing.
        assert posted_before_restart < len(acked)

        proc = serve(config, log)
        await wait_ready(port, proc, log)
        await drained(db, 60)
        with sqlite3.connect(db) as conn:
            stored = {r[0] for r in conn.execute("select payload from inbox_events")}
            statuses = dict(conn.execute("select status, count(*) from inbox_events group by 1"))
        stored_tags = {json.loads(p)["tag"] for p in stored}
        # The first push posts the findings; each later tag is a "still present" thread reply.
        calls = slack.calls_to("chat.postMessage")
        texts = [c.args["text"] + json.dumps(c.args.get("blocks")) for c in calls]
        posted_tags = [t for text in texts for t in set(re.findall(r"team-a/app:(t\d+)", text))]

        print(
            f"acked {len(acked)}, posted before restart {posted_before_restart}, "
            f"stored {len(stored_tags)}, posted {len(posted_tags)}"
        )
        assert acked <= stored_tags, "an acknowledged event was lost"
        assert statuses == {"done": len(stored_tags)}
        assert len(posted_tags) == len(set(posted_tags)), "a message was posted twice"
        assert set(posted_tags) == stored_tags, "a stored event was not announced"
    finally:
        proc.kill()
        proc.wait(10)
        registry.stop()
        await slack.stop()
