"""POST /hooks/registry/{name}: size and type → registry lookup → verify → parse → store → 202.

What each answer means to the sender:
- 202 `{"accepted", "duplicates", "ignored"}`: the events are stored (or were already), and
  the valid ones the bot has nothing to do with are counted in `ignored`.
- 200 `{"accepted": 0, ..., "unsupported": n, "detail"}`: a valid delivery of an event type the
  provider neither handles nor ignores (its module's `HANDLED` and `IGNORED`). Nothing is stored.
  It is a 2xx because every source retries or flags anything else (Docker Distribution and
  Harbor retry, Pub/Sub redelivers, GitHub lists failed deliveries), and retrying an event the
  bot does not know cannot help; it is counted as
  `crowsnest_events_rejected_total{status="200", reason="unsupported"}`, apart from malformed
  bodies (400, `reason="malformed"`). A Distribution batch that mixes such events with others
  is answered 202, with `"unsupported": n` added.
- 400 malformed, 401 unauthorized, 404 unknown registry, 415 content type, 503 retry later.
"""

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
from handlers.registry.errors import MalformedPayload, Unauthorized, Unsupported
from handlers.registry.parsed import Parsed

log = logging.getLogger(__name__)
UNSUPPORTED = "unsupported"


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
    except Unsupported as exc:
        return _unsupported(core, name, exc)
    except MalformedPayload as exc:
        return _refuse(core, name, 400, f"malformed {registry.kind} payload: {exc}")
    if parsed.ignored:
        core.metrics.events_ignored.labels(name).inc(parsed.ignored)
    if parsed.unsupported:
        core.metrics.events_rejected.labels(name, "202", UNSUPPORTED).inc(parsed.unsupported)
    try:
        accepted = await core.intake.accept(name, parsed.events)
    except IntakeUnavailable as exc:
        log.warning("intake from %s refused with 503: %s", name, exc)
        return _refuse(core, name, 503, "cannot store events right now; retry later")
    answer = f'{{"accepted": {accepted.stored}, "duplicates": {accepted.duplicates}, '
    answer += f'"ignored": {parsed.ignored}'
    if parsed.unsupported:
        answer += f', "unsupported": {parsed.unsupported}'
    return web.Response(status=202, text=answer + "}", content_type="application/json")


def _unsupported(core: Core, source: str, exc: Unsupported) -> web.Response:
    """200: nothing stored, and nothing for the source to retry (see the module docstring)."""
    core.metrics.events_rejected.labels(source, "200", UNSUPPORTED).inc(exc.events)
    log.info("ignored %d unsupported event(s) from registry %s: %s", exc.events, source, exc)
    answer = {"accepted": 0, "duplicates": 0, "ignored": 0, "unsupported": exc.events}
    return web.json_response(answer | {"detail": str(exc)}, status=200)


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
