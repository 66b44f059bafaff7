"""Shared fixtures: real PostgreSQL and registry processes, the Slack stand-in, app factories."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

import handlers
from bot.app import Runtime, build, web_app
from bot.config import Settings
from bot.store.db import Database, migrate
from tests.support.services import Postgres, Registry, have_services, start_postgres
from tests.support.slack_standin import SlackStandIn

FIXTURES = Path(__file__).parent / "fixtures"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test"
WEBHOOK_SECRET = "test-token"
#: Intake is authenticated by default: every test app has these, and sends them.
ADMISSION_TOKEN = "test-admission-token"
FALCO_TOKEN = "test-falco-token"
ADMISSION_AUTH = {"Authorization": f"Bearer {ADMISSION_TOKEN}"}
FALCO_AUTH = {"Authorization": f"Bearer {FALCO_TOKEN}"}


def _require_services() -> None:
    missing = have_services()
    if missing and os.environ.get("CROWSNEST_ALLOW_SKIP") == "1":
        pytest.skip(missing)
    if missing:
        pytest.fail(f"{missing}; `make test` installs them (set CROWSNEST_ALLOW_SKIP=1 to skip)")


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    _require_services()
    pg = start_postgres(tmp_path_factory.mktemp("pg"))
    try:
        template = pg.create_database("crowsnest_template")
        migrate(template)
        yield pg
    finally:
        pg.close()


_db_counter = iter(range(1_000_000))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per session, the SQLite counterpart of `crowsnest_template`.

    Migrations run without the bot's WAL pragma, but the file is checkpointed and put in
    rollback-journal mode anyway, so that it is whole on its own: a copy of it with a `-wal`
    beside it missing would lose committed pages. The bot switches each copy to WAL on connect."""
    path = tmp_path_factory.mktemp("sqlite-template") / "crowsnest.db"
    migrate(f"sqlite+aiosqlite:///{path}")
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
    finally:
        conn.close()
    assert mode == "delete", mode
    for side in ("-wal", "-shm", "-journal"):
        assert not Path(f"{path}{side}").exists(), f"{path}{side} left beside the template"
    return path


def _sqlite_copy(template: Path, directory: Path) -> str:
    path = directory / "crowsnest.db"
    shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated database on each engine, copied from the session's template."""
    if request.param == "sqlite":
        return _sqlite_copy(request.getfixturevalue("sqlite_template"), tmp_path)
    pg: Postgres = request.getfixturevalue("postgres")
    name = f"t{next(_db_counter)}_{os.getpid()}"
    pg.psql(f"CREATE DATABASE {name} TEMPLATE crowsnest_template")
    return pg.url(name)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh, migrated SQLite database, copied from the session's template."""
    return _sqlite_copy(sqlite_template, tmp_path)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    from bot.config import Database as DatabaseSettings

    database = Database(DatabaseSettings(url=database_url))
    yield database
    await database.dispose()


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = SlackStandIn(bot_token=BOT_TOKEN, epoch=time.time())
    await standin.start()
    yield standin
    await standin.stop()


def make_settings(database_url: str, **sections: Any) -> Settings:
    """Settings for a test: one `local` distribution registry unless `registries` is given, and
    the admission and Falco endpoints behind ADMISSION_TOKEN and FALCO_TOKEN."""
    data: dict[str, Any] = {
        "database": {"url": database_url, "migrate_on_start": False},
        "admission": {"token": ADMISSION_TOKEN},
        "falco": {"token": FALCO_TOKEN},
        "slack": {"mode": "dry-run", "fallback_channel": "#fallback", "coalesce_seconds": 0},
        "worker": {"poll_interval": 0.05, "retry_backoff": 0.05},
        "registries": [
            {
                "name": "local",
                "kind": "distribution",
                "url": "http://127.0.0.1:9",
                "webhook_secret": WEBHOOK_SECRET,
                "timeout": 2,
            }
        ],
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return Settings(**data)


def slack_section(standin: SlackStandIn, **extra: Any) -> dict[str, Any]:
    return {
        "mode": "http",
        "api_url": standin.api_url,
        "bot_token": BOT_TOKEN,
        "signing_secret": SIGNING_SECRET,
        "fallback_channel": "#fallback",
        "channel_interval": 0,
        "coalesce_seconds": 0,
        "retry_backoff": 0.05,
        **extra,
    }


AppFactory = Callable[[Settings], Any]


@pytest.fixture
async def app_client(
    aiohttp_client: Callable[..., Any],
) -> Callable[[Settings], Any]:
    """Start the real application for `settings` on a test server; returns (client, runtime)."""

    async def start(settings: Settings) -> tuple[TestClient[Any, web.Application], Runtime]:
        runtime = build(settings, handlers.EDGES)
        client = await aiohttp_client(web_app(runtime))
        return client, runtime

    return start


@pytest.fixture
def registry_dir(tmp_path: Path) -> Path:
    path = tmp_path / "registry"
    path.mkdir()
    return path


__all__ = ["Registry"]
