"""POST /hooks/falco: Falco's `http_output` JSON and Falcosidekick's webhook → RuntimeAlert.

Both send one Falco event per request (`json_output: true`): `rule`, `priority`, `output`,
`time`, `output_fields` with the Kubernetes fields when Falco runs with k8s metadata, and
Falcosidekick adds a `uuid`, which is the dedup key; without one the body's hash is.
A sender must present `Authorization: Bearer <[falco] token>`: a Falco alert can page on-call,
so the endpoint is open only where `[falco] allow_unauthenticated = true` says so.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.core import Core
from bot.infra.validation import describe_validation
from bot.infra.web import json_error, same_secret
from bot.intake.intake import IntakeUnavailable
from bot.model.events import RuntimeAlert

log = logging.getLogger(__name__)
SOURCE = "falco"
_DEPLOYMENT_POD = re.compile(r"^(?P<name>.+)-[a-z0-9]{6,10}-[a-z0-9]{5}$")
_SHORT_SUFFIX_POD = re.compile(r"^(?P<name>.+)-(?:[a-z0-9]{5}|\d+)$")


class Unauthorized(Exception):
    pass


class MalformedPayload(Exception):
    pass


class FalcoEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    rule: str = Field(min_length=1, max_length=200)
    priority: str = Field(max_length=32)
    output: str = Field("", max_length=20000)
    time: datetime
    hostname: str | None = Field(None, max_length=253)
    tags: list[str] = Field(default_factory=list, max_length=100)
    uuid: str | None = Field(None, max_length=100)
    output_fields: dict[str, Any] = Field(default_factory=dict)


def verify(headers: Mapping[str, str], token: str | None) -> None:
    """`Authorization: Bearer <token>`, compared in constant time; None: the endpoint is open
    (`allow_unauthenticated`), which the caller decides."""
    if token is None:
        return
    if not same_secret(headers.get("Authorization", ""), f"Bearer {token}"):
        raise Unauthorized("missing or wrong Authorization header")


def parse(headers: Mapping[str, str], body: bytes) -> RuntimeAlert:
    try:
        ev = FalcoEvent.model_validate_json(body)
        fields = ev.output_fields
        pod = _text(fields.get("k8s.pod.name"))
        return RuntimeAlert(
            delivery_id=ev.uuid or "sha256:" + hashlib.sha256(body).hexdigest(),
            rule=ev.rule,
            priority=ev.priority,
            output=ev.output[:4000],
            time=ev.time,
            namespace=_text(fields.get("k8s.ns.name")),
            pod=pod,
            workload=_workload(pod, fields.get("k8s.pod.labels")),
            image=_image(fields),
            hostname=ev.hostname,
            tags=tuple(t[:64] for t in ev.tags),
        )
    except ValidationError as exc:
        raise MalformedPayload(describe_validation(exc)) from None


def _text(value: Any) -> str | None:
    return str(value)[:253] if isinstance(value, str | int) and str(value) else None


def _image(fields: Mapping[str, Any]) -> str | None:
    repo = _text(fields.get("container.image.repository"))
    tag = _text(fields.get("container.image.tag"))
    return f"{repo}:{tag}"[:512] if repo and tag else repo


def _workload(pod: str | None, labels: Any) -> str | None:
    """The service a pod belongs to: its app label, else its name without generated suffixes."""
    pairs: dict[str, str] = {}
    if isinstance(labels, dict):
        pairs = {str(k): str(v) for k, v in labels.items()}
    elif isinstance(labels, list):
        pairs = dict(str(x).split(":", 1) for x in labels if ":" in str(x))
    for key in ("app.kubernetes.io/name", "app", "k8s-app"):
        if pairs.get(key):
            return pairs[key][:253]
    if pod is None:
        return None
    for pattern in (_DEPLOYMENT_POD, _SHORT_SUFFIX_POD):
        if m := pattern.match(pod):
            return m["name"]
    return pod


def mount(app: web.Application, core: Core) -> None:
    async def receive(request: web.Request) -> web.Response:
        if request.content_type not in ("application/json", ""):
            return json_error(415, f"unsupported content type {request.content_type!r}")
        config = core.settings.falco
        token = config.token.get_secret_value() if config.token is not None else ""
        if not token and not config.allow_unauthenticated:
            # Fail closed: `serve` refuses such a config; an app built without one still
            # must not let anyone page on-call.
            core.metrics.events_rejected.labels(SOURCE, "401").inc()
            return json_error(401, "no [falco] token is configured, so every alert is refused")
        body = await request.read()
        try:
            verify(request.headers, token or None)
            alert = parse(request.headers, body)
        except Unauthorized as exc:
            core.metrics.events_rejected.labels(SOURCE, "401").inc()
            return json_error(401, str(exc))
        except MalformedPayload as exc:
            core.metrics.events_rejected.labels(SOURCE, "400").inc()
            return json_error(400, f"malformed Falco event: {exc}")
        try:
            accepted = await core.intake.accept(SOURCE, [alert])
        except IntakeUnavailable:
            return json_error(503, "cannot store events right now; retry later")
        return web.json_response(
            {"accepted": accepted.stored, "duplicates": accepted.duplicates}, status=202
        )

    app.router.add_post("/hooks/falco", receive)
