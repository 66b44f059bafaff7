"""INSERT … ON CONFLICT for whichever engine the session is bound to."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert(session: AsyncSession, table: Any) -> Any:
    dialect = session.bind.dialect.name
    return (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
