"""What one transaction has already read or written, so a unit of work does it once.

A worker commits several events in one transaction (on SQLite), often pushes of one repository:
the same subject lock, tracked findings and suppressions would be read again for each of them,
and the same findings inserted again. The memo lives on the session and is dropped as soon as
the session is in another transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

_KEY = "crowsnest.memo"


def transaction_memo(session: AsyncSession) -> dict[tuple[Any, ...], Any]:
    """A dict for this session's current transaction (empty at the start of each one)."""
    sync = session.sync_session
    transaction = sync.get_transaction()
    held = sync.info.get(_KEY)
    if held is None or held[0] is not transaction:
        held = sync.info[_KEY] = (transaction, {})
    memo: dict[tuple[Any, ...], Any] = held[1]
    return memo
