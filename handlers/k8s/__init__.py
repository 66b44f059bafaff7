"""Kubernetes: the admission webhook and the list/watch of each configured cluster."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from bot.core import Core
from bot.model.events import WorkloadObserved
from handlers.k8s import admission
from handlers.k8s.watch import ClusterWatcher


def mount(app: web.Application, core: Core) -> None:
    admission.mount(app, core)
    if not core.settings.clusters:
        return

    async def watchers(_: web.Application) -> AsyncIterator[None]:
        tasks = []
        for cluster in core.settings.clusters:
            source = f"cluster:{cluster.name}"

            async def emit(event: WorkloadObserved, source: str = source) -> None:
                await core.intake.accept(source, [event])

            tasks.append(
                asyncio.create_task(
                    ClusterWatcher(cluster, emit).run(), name=f"watch-{cluster.name}"
                )
            )
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(watchers)
