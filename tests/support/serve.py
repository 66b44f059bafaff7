"""`crowsnest serve` as a subprocess, for the tests that kill it or run two of it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

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
