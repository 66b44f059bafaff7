"""Operational endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.core import Core

log = logging.getLogger(__name__)


def mount(app: web.Application, core: Core) -> None:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        try:
            revision = await core.db.current_revision()
        except Exception as exc:
            log.warning("readyz: database unavailable: %s", type(exc).__name__)
            return web.json_response({"status": "database unavailable"}, status=503)
        if revision != core.head_revision:
            body = {"status": "migrations pending", "at": revision, "head": core.head_revision}
            return web.json_response(body, status=503)
        return web.json_response({"status": "ready", "revision": revision})

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(core.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
