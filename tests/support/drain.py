"""Waiting for a `crowsnest serve` subprocess (on SQLite) to finish what it owes."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path


def owed(db: Path) -> tuple[int, int]:
    """(inbox events not done, Slack messages not posted), read straight from the file."""
    with sqlite3.connect(db) as conn:
        events = conn.execute("select count(*) from inbox_events where status != 'done'")
        messages = conn.execute("select count(*) from slack_messages where status != 'posted'")
        return int(events.fetchone()[0]), int(messages.fetchone()[0])


async def drained(db: Path, timeout: float) -> bool:
    """Poll until nothing is owed; False if `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if owed(db) == (0, 0):
            return True
        await asyncio.sleep(0.2)
    return False
