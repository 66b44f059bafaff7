"""Docker Distribution notifications → image events. GitLab's container registry sends the same.

Reference: distribution/notifications (`application/vnd.docker.distribution.events.v1+json`).
The registry sends a static header (`Authorization: Bearer <secret>`) and no signature, retries
anything but 2xx/3xx forever, and redelivers the same event id when we are slow: event ids are
the dedup key. `target.url` and `request.host` come from the pushing client's Host header, so
they are never used.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.config import Registry
from bot.model.events import ImageDeleted, ImagePushed
from handlers.registry import auth
from handlers.registry.errors import MalformedPayload
from handlers.registry.parsed import Parsed, describe

MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Target(_Payload):
    media_type: str | None = Field(None, alias="mediaType")
    digest: str | None = None
    repository: str
    tag: str | None = None


class Actor(_Payload):
    name: str | None = None


class Event(_Payload):
    id: str = Field(min_length=1, max_length=200)
    timestamp: datetime | None = None
    action: str
    target: Target
    actor: Actor = Actor()


class Envelope(_Payload):
    events: list[Event] = Field(max_length=1000)


def verify(
    headers: Mapping[str, str], query: Mapping[str, str], body: bytes, registry: Registry
) -> None:
    """The configured secret, as `Authorization: Bearer <secret>`, compared in constant time."""
    auth.bearer_header(headers, registry)


def parse(headers: Mapping[str, str], body: bytes, registry: str) -> Parsed:
    try:
        envelope = Envelope.model_validate_json(body)
        events = [e for e in (_event(ev, registry) for ev in envelope.events) if e is not None]
    except ValidationError as exc:
        raise MalformedPayload(describe(exc)) from None
    return Parsed(events=events, ignored=len(envelope.events) - len(events))


def _event(ev: Event, registry: str) -> ImagePushed | ImageDeleted | None:
    t = ev.target
    if ev.action == "push" and t.media_type in MANIFEST_TYPES and t.tag and t.digest:
        return ImagePushed(
            delivery_id=ev.id,
            registry=registry,
            repository=t.repository,
            digest=t.digest,
            tag=t.tag,
            media_type=t.media_type,
            actor=ev.actor.name,
            pushed_at=ev.timestamp,
        )
    if ev.action == "delete" and (t.digest or t.tag) and t.media_type in (None, *MANIFEST_TYPES):
        return ImageDeleted(
            delivery_id=ev.id,
            registry=registry,
            repository=t.repository,
            digest=t.digest,
            tag=t.tag,
        )
    # Blob pushes, pulls, mounts and untagged index children: valid, and nothing to check.
    return None
