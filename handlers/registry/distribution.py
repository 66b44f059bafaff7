"""Docker Distribution notifications → image events. GitLab's container registry sends the same.

Reference: distribution/notifications (`application/vnd.docker.distribution.events.v1+json`).
The registry sends a static header (`Authorization: Bearer <secret>`) and no signature, retries
anything but 2xx/3xx forever, and redelivers the same event id when we are slow: event ids are
the dedup key. `target.url` and `request.host` come from the pushing client's Host header, so
they are never used.

Events by action (`HANDLED`, `IGNORED`): `push` and `delete` are ours; `pull` and `mount` are
ignored, and so are pushes of blobs and of untagged manifests (an index's children). An action
in neither table is unsupported. Because the registry retries anything but 2xx/3xx forever and
in order, a 400 would stop its queue: a delivery of only unsupported events is answered 200
with `"unsupported"` instead, and one that mixes them with others is stored as usual (202), the
unsupported ones counted in the answer and the metric.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime

from pydantic import Field

from bot.model.events import ImageDeleted, ImagePushed
from handlers.registry import auth
from handlers.registry.errors import Unsupported
from handlers.registry.parsed import Parsed, Payload, checked, handler_for

MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
#: Distribution's actions are lower-case words.
_ACTION = re.compile(r"[a-z_]{1,50}")


class Target(Payload):
    media_type: str | None = Field(None, alias="mediaType")
    digest: str | None = None
    repository: str
    tag: str | None = None


class Actor(Payload):
    name: str | None = None


class Event(Payload):
    id: str = Field(min_length=1, max_length=200)
    timestamp: datetime | None = None
    action: str
    target: Target
    actor: Actor = Actor()


class Envelope(Payload):
    events: list[Event] = Field(max_length=1000)


#: The configured secret, as `Authorization: Bearer <secret>`, compared in constant time.
verify = auth.bearer_header


@checked
def parse(headers: Mapping[str, str], body: bytes, registry: str) -> Parsed:
    envelope = Envelope.model_validate_json(body)
    events: list[ImagePushed | ImageDeleted] = []
    unsupported: list[Unsupported] = []
    for ev in envelope.events:
        try:
            handler = handler_for(ev.action, HANDLED, IGNORED, what="action", shape=_ACTION)
        except Unsupported as exc:
            unsupported.append(exc)
            continue
        event = handler(ev, registry) if handler is not None else None
        if event is not None:
            events.append(event)
    ignored = len(envelope.events) - len(events) - len(unsupported)
    if unsupported and not events and not ignored:
        raise Unsupported(str(unsupported[0]), events=len(unsupported))
    return Parsed(events=events, ignored=ignored, unsupported=len(unsupported))


def _push(ev: Event, registry: str) -> ImagePushed | None:
    t = ev.target
    if t.media_type not in MANIFEST_TYPES or not (t.tag and t.digest):
        return None  # a blob, or an untagged manifest (an index's child): nothing to check
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


def _delete(ev: Event, registry: str) -> ImageDeleted | None:
    t = ev.target
    if not (t.digest or t.tag) or t.media_type not in (None, *MANIFEST_TYPES):
        return None
    return ImageDeleted(
        delivery_id=ev.id, registry=registry, repository=t.repository, digest=t.digest, tag=t.tag
    )


HANDLED: dict[str, Callable[[Event, str], ImagePushed | ImageDeleted | None]] = {
    "push": _push,  # a tagged manifest or index; blobs and untagged manifests are ignored
    "delete": _delete,  # a manifest by digest, or a tag
}
#: Valid notifications the bot has nothing to do with.
IGNORED = frozenset({"pull", "mount"})
