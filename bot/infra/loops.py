"""Background loops that stop when they are cancelled, whatever their error handling caught."""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Raise CancelledError when this task has been asked to stop.

    A loop that catches Exception to keep going can lose its cancellation: when a cleanup (a
    `finally`, a rollback) fails while CancelledError is on its way out, the new error takes
    its place and the `except Exception` swallows it. The request stays on the task
    (`Task.cancelling()`), so a loop asks before each turn; otherwise shutdown, which waits
    for the loop to end, would wait forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
