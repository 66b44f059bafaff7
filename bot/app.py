"""Composition root: the only place that builds engines, HTTP clients, Slack clients and tasks.

`build(settings, edges)` wires the core; `web_app(runtime)` turns it into one aiohttp application
whose cleanup contexts own every resource's lifetime. The edges come from `handlers/`, which this
package never imports.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.cluster.admission import AdmissionControl
from bot.config import Settings, SlackMode
from bot.core import Core, Edge
from bot.digest.jobs import DigestJobs
from bot.findings.announce import Announcer
from bot.findings.authz import NoDirectory, Permissions
from bot.findings.decisions import Decisions
from bot.findings.patch_hooks import PatchHooks
from bot.findings.queries import Queries
from bot.images.registry_client import RegistryClient
from bot.infra.clock import Clock, SystemClock
from bot.infra.metrics import Metrics
from bot.infra.scheduler import scheduler
from bot.infra.web import json_errors
from bot.intake.intake import Intake
from bot.intake.pipeline import Pipeline
from bot.intake.worker import PermanentError, Workers
from bot.slack.delivery import Delivery
from bot.slack.groups import SlackDirectory
from bot.slack.posters import DryRunPoster, Poster, WebApiPoster
from bot.store import inbox, outbox
from bot.store.db import Database, head_revision, migrate_async
from bot.vulns.service import FREEZE_AFTER, Vulnerabilities

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    core: Core
    edges: Sequence[Edge]
    workers: Workers
    delivery: Delivery
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


def build(
    settings: Settings,
    edges: Sequence[Edge],
    *,
    clock: Clock | None = None,
    dry_run_out: TextIO = sys.stdout,
) -> Runtime:
    clock = clock or SystemClock()
    metrics = Metrics()
    db = Database(settings.database)
    intake = Intake(db, metrics, clock, settings.server.intake_timeout)
    registry_client = RegistryClient(scan_layers=settings.checks.scan_layers, limits=settings.scan)
    slack_client, bolt = _slack(settings)
    poster: Poster = (
        WebApiPoster(slack_client, metrics)
        if slack_client is not None
        else DryRunPoster(dry_run_out)
    )
    outbox_wake = asyncio.Event()
    announcer = Announcer(settings)
    permissions = Permissions(
        settings, SlackDirectory(slack_client) if slack_client else NoDirectory()
    )
    patch_hooks = PatchHooks(settings.patch_hooks)
    core = Core(
        settings=settings,
        db=db,
        metrics=metrics,
        clock=clock,
        intake=intake,
        registry_client=registry_client,
        slack_client=slack_client,
        bolt=bolt,
        head_revision=head_revision(),
        announcer=announcer,
        decisions=Decisions(settings, db, announcer, permissions, patch_hooks, clock, outbox_wake),
        permissions=permissions,
        patch_hooks=patch_hooks,
        queries=Queries(db),
        admission=AdmissionControl(settings, db),
    )
    workers = Workers(
        db,
        Pipeline(
            settings,
            registry_client,
            clock,
            announcer,
            Vulnerabilities(db, freeze_after=FREEZE_AFTER),
            db,
        ),
        settings.worker,
        metrics,
        clock,
        wake=intake.new_work,
        permanent=(PermanentError,),
        on_commit=outbox_wake.set,
    )
    delivery = Delivery(db, poster, settings.slack, metrics, clock, wake=outbox_wake)
    return Runtime(core=core, edges=edges, workers=workers, delivery=delivery)


async def deliver_now(settings: Settings, out: TextIO = sys.stdout, rounds: int = 50) -> None:
    """Deliver what the outbox owes, from a command-line process (no server running)."""
    metrics, clock, db = Metrics(), SystemClock(), Database(settings.database)
    slack_client, _ = _slack(settings)
    poster: Poster = WebApiPoster(slack_client, metrics) if slack_client else DryRunPoster(out)
    delivery = Delivery(db, poster, settings.slack, metrics, clock, asyncio.Event())
    try:
        for _ in range(rounds):
            if not await delivery.run_once():
                break
    finally:
        await db.dispose()


def _slack(settings: Settings) -> tuple[AsyncWebClient | None, AsyncApp | None]:
    slack = settings.slack
    if slack.effective_mode is SlackMode.DRY_RUN or slack.bot_token is None:
        return None, None
    client = AsyncWebClient(
        token=slack.bot_token.get_secret_value(),
        base_url=str(slack.api_url),
        # The SDK's default also resends after a connection drops mid-call, which may post
        # twice; only a connection refused is surely safe to retry. Delivery handles the rest.
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(error_types=[aiohttp.ClientConnectorError])
        ],
    )
    signing = slack.signing_secret.get_secret_value() if slack.signing_secret else None
    if slack.effective_mode is SlackMode.HTTP and not signing:
        log.warning("slack: no signing_secret, so /slack/events refuses every request")
        return client, None
    bolt = AsyncApp(
        client=client,
        signing_secret=signing or "unused-in-socket-mode",
        request_verification_enabled=slack.effective_mode is SlackMode.HTTP,
        process_before_response=True,
        logger=logging.getLogger("bot.slack.bolt"),
    )
    return client, bolt


def web_app(rt: Runtime) -> web.Application:
    max_body = rt.core.settings.server.max_body_bytes
    app = web.Application(client_max_size=max_body, middlewares=[json_errors(max_body)])
    app[RUNTIME] = rt
    app.cleanup_ctx.extend(
        [_database_ctx, _http_clients_ctx, _tasks_ctx, _scheduler_ctx, _socket_mode_ctx]
    )
    for edge in rt.edges:
        edge.mount(app, rt.core)
    return app


RUNTIME = web.AppKey("runtime", Runtime)
#: How long shutdown waits for the background loops once they are cancelled.
SHUTDOWN_SECONDS = 15.0


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    core = app[RUNTIME].core
    settings = core.settings.database
    if settings.should_migrate_on_start:
        await migrate_async(settings.url)
    try:
        revision = await core.db.current_revision()
    except Exception as exc:
        revision = None
        log.warning("database not reachable or not migrated yet: %s", type(exc).__name__)
    if revision != core.head_revision:
        log.warning(
            "database at revision %s, code at %s: run `crowsnest migrate`",
            revision,
            core.head_revision,
        )
    elif settings.is_sqlite:
        # SQLite means one process: anything it had in flight died with the previous run.
        async with core.db.transaction() as session:
            released = await inbox.release_all_leases(session)
            unsure = await outbox.mark_unsure(session)
        if released or unsure:
            log.warning("recovered %d claimed events and %d in-flight messages", released, unsure)
    yield
    await core.db.dispose()


async def _http_clients_ctx(app: web.Application) -> AsyncIterator[None]:
    core = app[RUNTIME].core
    await core.registry_client.open()
    await core.patch_hooks.open()
    slack = core.slack_client
    if slack is not None:
        # Without a session of its own the client opens a connection (and a TLS handshake,
        # against Slack) for every call; this one keeps them alive between calls.
        slack.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=slack.timeout))
    yield
    if slack is not None and slack.session is not None:
        await slack.session.close()
        slack.session = None
    await core.patch_hooks.close()
    await core.registry_client.close()


async def _scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    core = app[RUNTIME].core
    interval = min(core.settings.alerts.ack_timeout / 4, 30.0)
    digests = DigestJobs(core.settings, core.db, core.clock)
    sched = scheduler(
        {
            "expire-ignores": (core.decisions.expire_ignores, 30.0),
            "escalate-alerts": (core.decisions.escalate, interval),
            "digests": (digests.run_due, 60.0),
        }
    )
    sched.start()
    yield
    sched.shutdown(wait=False)


async def _tasks_ctx(app: web.Application) -> AsyncIterator[None]:
    rt = app[RUNTIME]
    if rt.core.slack_mode is SlackMode.DRY_RUN:
        log.warning("slack: no bot token configured, running dry: messages are printed, not posted")
    rt.tasks = [
        asyncio.create_task(rt.core.intake.run(), name="intake-writer"),
        asyncio.create_task(rt.workers.run(), name="inbox-workers"),
        asyncio.create_task(rt.delivery.run(), name="slack-delivery"),
    ]
    yield
    for task in reversed(rt.tasks):
        task.cancel()
    # Bounded: a process asked to stop must stop, even if a loop will not.
    _, running = await asyncio.wait(rt.tasks, timeout=SHUTDOWN_SECONDS)
    for task in running:
        log.error("shutdown: %s did not stop within %.0f s", task.get_name(), SHUTDOWN_SECONDS)
    for task in set(rt.tasks) - running:
        if not task.cancelled() and task.exception() is not None:
            log.error("shutdown: %s ended with %r", task.get_name(), task.exception())
    await rt.core.intake.drain()


async def _socket_mode_ctx(app: web.Application) -> AsyncIterator[None]:
    core = app[RUNTIME].core
    if core.slack_mode is not SlackMode.SOCKET or core.bolt is None:
        yield
        return
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    assert core.settings.slack.app_token is not None
    handler = AsyncSocketModeHandler(core.bolt, core.settings.slack.app_token.get_secret_value())
    await handler.connect_async()  # type: ignore[no-untyped-call]
    yield
    await handler.close_async()  # type: ignore[no-untyped-call]
