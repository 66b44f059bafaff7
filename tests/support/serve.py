"""`crowsnest serve` as a subprocess, for the tests that kill it or run two of it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import (
    ADMISSION_TOKEN,
    BOT_TOKEN,
    FALCO_TOKEN,
    SIGNING_SECRET,
    WEBHOOK_SECRET,
)

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def serve(
    config: Path, log: Path, *, level: str = "warning", module: str = "handlers.cli"
) -> subprocess.Popen[bytes]:
    """Start serving `config`, output appended to `log`; scheduled jobs every 0.3 s (with
    `module="tests.support.fast_jobs"`)."""
    return subprocess.Popen(
        [sys.executable, "-m", module, "serve", "--config", str(config)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        env={**os.environ, "CROWSNEST_LOG_LEVEL": level, "CROWSNEST_TEST_JOB_SECONDS": "0.3"},
    )


async def wait_ready(
    port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20
) -> None:
    """Until `/readyz` answers 200; fails at once, with the log's tail, if the process died."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"crowsnest serve exited: {log.read_text()[-2000:]}")
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"crowsnest serve did not become ready: {log.read_text()[-2000:]}")


def write_config(
    path: Path,
    *,
    port: int,
    db: Path,
    registry_url: str,
    slack_url: str | None = None,
    slack: dict[str, Any] | None = None,
    worker: dict[str, Any] | None = None,
    registry: dict[str, Any] | None = None,
) -> None:
    """The `crowsnest.toml` of a served test bot: `port` on loopback, a SQLite file, the
    intake tokens, one registry `local`, and Slack at `slack_url` (dry run without one).
    `slack`, `worker` and `registry` add or override keys of those sections."""
    slack_keys: dict[str, Any] = {"fallback_channel": "#fallback"}
    if slack_url is not None:
        slack_keys |= {"api_url": slack_url, "bot_token": BOT_TOKEN}
        slack_keys |= {"signing_secret": SIGNING_SECRET}
    sections = {
        "server": {"port": port},
        "database": {"url": f"sqlite+aiosqlite:///{db}"},
        "slack": slack_keys | (slack or {}),
        "worker": worker or {},
        "admission": {"token": ADMISSION_TOKEN},
        "falco": {"token": FALCO_TOKEN},
    }
    local = {"name": "local", "kind": "distribution", "url": registry_url}
    local |= {"webhook_secret": WEBHOOK_SECRET} | (registry or {})
    text = "".join(f"[{name}]\n{_keys(keys)}" for name, keys in sections.items())
    path.write_text(text + f"[[registries]]\n{_keys(local)}")


def _keys(table: dict[str, Any]) -> str:
    """`key = value` lines; JSON's strings and numbers are TOML's too."""
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())
