"""POST /hooks/registry/{name}: size and type → registry lookup → verify → parse → store → 202."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from bot.config import Registry, RegistryKind
from bot.core import Core
from bot.infra.web import json_error
from bot.intake.intake import IntakeUnavailable
from handlers.registry import (
    artifact_registry,
    distribution,
    dockerhub,
    ecr,
    ghcr,
    harbor,
    quay,
)
from handlers.registry.errors import MalformedPayload, Unauthorized
from handlers.registry.parsed import Parsed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Provider:
    verify: Callable[[Mapping[str, str], Mapping[str, str], bytes, Registry], None]
    parse: Callable[[Mapping[str, str], bytes, str], Parsed]
    content_types: frozenset[str]


_JSON = frozenset({"application/json"})
_DISTRIBUTION = Provider(
    distribution.verify,
    distribution.parse,
    _JSON | {"application/vnd.docker.distribution.events.v1+json"},
)
PROVIDERS: dict[RegistryKind, Provider] = {
    RegistryKind.DISTRIBUTION: _DISTRIBUTION,
    RegistryKind.GITLAB: _DISTRIBUTION,  # GitLab's registry is Docker Distribution
    RegistryKind.HARBOR: Provider(harbor.verify, harbor.parse, _JSON),
    RegistryKind.DOCKERHUB: Provider(dockerhub.verify, dockerhub.parse, _JSON),
    RegistryKind.GHCR: Provider(ghcr.verify, ghcr.parse, _JSON),
    RegistryKind.QUAY: Provider(quay.verify, quay.parse, _JSON),
    RegistryKind.ECR: Provider(ecr.verify, ecr.parse, _JSON),
    RegistryKind.ARTIFACT_REGISTRY: Provider(
        artifact_registry.verify, artifact_registry.parse, _JSON
    ),
}


def mount(app: web.Application, core: Core) -> None:
    async def receive(request: web.Request) -> web.Response:
        return await _receive(request, core)

    app.router.add_post("/hooks/registry/{name}", receive)


async def _receive(request: web.Request, core: Core) -> web.Response:
    name = request.match_info["name"]
    registry = core.settings.registry(name)
    if registry is None:
        return _refuse(core, name, 404, f"no registry named {name!r} is configured")
    provider = PROVIDERS[registry.kind]
    if request.content_type not in provider.content_types and request.content_type != "":
        return _refuse(core, name, 415, f"unsupported content type {request.content_type!r}")
    body = await request.read()
    try:
        if not _open(registry):
            provider.verify(request.headers, request.query, body, registry)
    except Unauthorized as exc:
        return _refuse(core, name, 401, str(exc))
    try:
        parsed = provider.parse(request.headers, body, registry.name)
    except MalformedPayload as exc:
        return _refuse(core, name, 400, f"malformed {registry.kind} payload: {exc}")
    if parsed.ignored:
        core.metrics.events_ignored.labels(name).inc(parsed.ignored)
    try:
        accepted = await core.intake.accept(name, parsed.events)
    except IntakeUnavailable as exc:
        log.warning("intake from %s refused with 503: %s", name, exc)
        return _refuse(core, name, 503, "cannot store events right now; retry later")
    answer = f'{{"accepted": {accepted.stored}, "duplicates": {accepted.duplicates}, '
    answer += f'"ignored": {parsed.ignored}}}'
    return web.Response(status=202, text=answer, content_type="application/json")


def _open(registry: Registry) -> bool:
    """Served without a secret: only when the registry's section says so and has none. Without
    either, `verify` refuses every request (fail closed)."""
    secret = registry.webhook_secret.get_secret_value() if registry.webhook_secret else ""
    return registry.allow_unauthenticated and not secret


def _refuse(core: Core, source: str, status: int, message: str) -> web.Response:
    core.metrics.events_rejected.labels(source, str(status)).inc()
    if status != 404:
        log.info("refused %s request from registry %s: %s", status, source, message)
    return json_error(status, message)
