"""An event that kills `crowsnest serve` every time it is processed is parked, not retried
after every restart: the bot cannot be crash-looped by its own input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
from pathlib import Path

import aiohttp
import pytest

from bot.store import inbox
from tests.conftest import WEBHOOK_SECRET
from tests.support.serve import serve, wait_ready, write_config
from tests.support.services import free_port
from tests.support.settle import eventually

pytestmark = pytest.mark.services

MAX_ATTEMPTS = 3
DIGEST = "sha256:" + "cd" * 32


class SilentRegistry:
    """Accepts connections, reads the request line, never answers: whoever asks it for a
    manifest is stuck mid-event until it is killed."""

    def __init__(self) -> None:
        self.manifest_requests = 0
        self._server: asyncio.Server | None = None
        self._held: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.append(writer)
        line = await reader.readline()
        if b"/manifests/" in line:
            self.manifest_requests += 1
        await reader.read()  # until the client goes away (killed)

    async def stop(self) -> None:
        for w in self._held:
            w.close()
        if self._server is not None:
            self._server.close()


def _push() -> bytes:
    target = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": DIGEST,
        "repository": "team-a/app",
        "tag": "1",
    }
    return json.dumps(
        {"events": [{"id": "e1", "action": "push", "target": target, "actor": {}}]}
    ).encode()


def _event(db: Path) -> tuple[str, int, str | None]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        [row] = conn.execute("select status, attempts, last_error from inbox_events").fetchall()
    return row


async def test_an_event_that_kills_serve_each_time_is_parked_and_serve_stays_up(
    tmp_path: Path,
) -> None:
    registry = SilentRegistry()
    registry_url = await registry.start()
    port, db = free_port(), tmp_path / "bot.db"
    config, log = tmp_path / "crowsnest.toml", tmp_path / "serve.log"
    write_config(
        config,
        port=port,
        db=db,
        registry_url=registry_url,
        worker={
            "concurrency": 1,
            "max_attempts": MAX_ATTEMPTS,
            "poll_interval": 0.1,
            "retry_backoff": 0.1,
        },
        registry={"timeout": 600},
    )
    proc: subprocess.Popen[bytes] | None = None
    try:
        async with aiohttp.ClientSession() as http:
            for run in range(1, MAX_ATTEMPTS + 2):
                proc = serve(config, log)
                await wait_ready(port, proc, log)
                if run == 1:
                    async with http.post(
                        f"http://127.0.0.1:{port}/hooks/registry/local",
                        data=_push(),
                        headers={
                            "Authorization": f"Bearer {WEBHOOK_SECRET}",
                            "Content-Type": "application/json",
                        },
                    ) as r:
                        assert r.status == 202
                if run <= MAX_ATTEMPTS:
                    # The worker is mid-event, waiting on the registry: kill it there.
                    await eventually(
                        lambda n=run: registry.manifest_requests == n, 20, f"attempt {run} fetches"
                    )
                    assert _event(db)[:2] == ("processing", run)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                    continue
                # The restart after the last attempt parks the event instead of claiming it.
                await eventually(lambda: _event(db)[0] == "failed", 20, "the event is parked")
                status, attempts, error = _event(db)
                assert (status, attempts, error) == ("failed", MAX_ATTEMPTS, inbox.PROCESS_DIED)
                await asyncio.sleep(1)  # ten polls: nothing claims it again
                assert registry.manifest_requests == MAX_ATTEMPTS
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    assert r.status == 200
                assert proc.poll() is None
        assert f"parked as failed after {MAX_ATTEMPTS} attempts" in log.read_text()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)
        await registry.stop()
