"""Amazon ECR events, delivered by an EventBridge rule to an API destination → events.

Reference: Amazon ECR User Guide, "Amazon ECR events and EventBridge". Each request is one
EventBridge event `{"version", "id", "detail-type", "source": "aws.ecr", "time", "detail"}`; for
`ECR Image Action` the detail is `{"result", "repository-name", "image-digest", "action-type",
"image-tag"}`.

Authentication: the API destination's connection adds `Authorization: Bearer <secret>` (API key
auth), compared in constant time. EventBridge retries on 5xx and 429, and may deliver an event
more than once: the event `id` is the dedup key.

Events by detail-type and action-type (`HANDLED`, `IGNORED`):
- `ECR Image Action` PUSH and DELETE with result SUCCESS are ours; FAILURE results and the other
  detail-types ECR documents (image scans, scan setting changes, replication, pull-through cache,
  referrers) are ignored. An image action must come from `source: aws.ecr` (only AWS can emit
  `aws.*`).
- Any other detail-type or action-type is unsupported (one ECR added after this bot, or a rule
  matching more than it should). EventBridge retries only 5xx and 429 and drops other 4xx, so a
  400 would lose nothing, but it would show as failed invocations of the API destination: an
  unsupported event is answered 200 with `"unsupported"` and counted apart instead.

Quirks:
- The documentation's sample digest is shorter than 64 hex digits. A digest that is not a full
  sha256 is treated as absent: the push is resolved by its tag instead, and only a push or delete
  that then names nothing at all is malformed.
- A push without `image-tag` (a manifest pushed by digest, e.g. an index child) is passed on by
  digest alone. A DELETE that names a tag carries the digest too, as ECR reports it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pydantic import Field

from bot.model.events import ImageDeleted, ImagePushed
from handlers.registry import auth
from handlers.registry.errors import MalformedPayload
from handlers.registry.parsed import (
    Parsed,
    Payload,
    checked,
    full_digest,
    handler_for,
    ignored,
    json_object,
)

IMAGE_ACTION = "ECR Image Action"
#: EventBridge detail-types are capitalised words; ECR's action-types upper-case words.
_NAME = re.compile(r"[A-Z][A-Za-z ]{0,59}(?: [A-Z_]{1,30})?")


class _Head(Payload):
    detail_type: str = Field(alias="detail-type")


class ImageActionDetail(Payload):
    result: str
    repository_name: str = Field(alias="repository-name")
    image_digest: str | None = Field(None, alias="image-digest")
    action_type: str = Field(alias="action-type")
    image_tag: str | None = Field(None, alias="image-tag")


class ImageAction(Payload):
    id: str = Field(min_length=1, max_length=200)
    source: str
    time: datetime | None = None
    detail: ImageActionDetail


#: The configured secret, as `Authorization: Bearer <secret>`, compared in constant time.
verify = auth.bearer_header


@checked
def parse(headers: Mapping[str, str], body: bytes, registry: str) -> Parsed:
    raw = json_object(body)
    name = _Head.model_validate(raw).detail_type
    if name == IMAGE_ACTION:  # an image action names what happened in its detail
        name = f"{IMAGE_ACTION} {ImageAction.model_validate(raw).detail.action_type}"
    handler = handler_for(name, HANDLED, IGNORED, what="detail-type", shape=_NAME)
    if handler is None:
        return ignored()
    ev = ImageAction.model_validate(raw)
    if ev.source != "aws.ecr":
        raise MalformedPayload("an ECR Image Action whose source is not aws.ecr")
    if ev.detail.result != "SUCCESS":
        return ignored()  # the push or delete did not happen
    return handler(ev, registry)


def _push(ev: ImageAction, registry: str) -> Parsed:
    return Parsed(events=[ImagePushed(**_fields(ev, registry), pushed_at=ev.time)])


def _delete(ev: ImageAction, registry: str) -> Parsed:
    return Parsed(events=[ImageDeleted(**_fields(ev, registry))])


def _fields(ev: ImageAction, registry: str) -> dict[str, Any]:
    """Where the image is, and the event id as the dedup key."""
    d = ev.detail
    # Not a full sha256 (the documentation's sample is truncated): no digest, resolve by tag.
    digest = full_digest(d.image_digest)
    tag = d.image_tag or None
    if digest is None and tag is None:
        raise MalformedPayload("the image action names neither a sha256 digest nor a tag")
    return {
        "delivery_id": ev.id,
        "registry": registry,
        "repository": d.repository_name,
        "digest": digest,
        "tag": tag,
    }


#: detail-type, and for image actions the action-type.
HANDLED: dict[str, Callable[[ImageAction, str], Parsed]] = {
    f"{IMAGE_ACTION} PUSH": _push,
    f"{IMAGE_ACTION} DELETE": _delete,
}
#: Valid ECR events on the default bus, not ours (yet).
IGNORED = frozenset(
    {
        "ECR Image Scan",
        "ECR Scan Resource Change",
        "ECR Pull Through Cache Action",
        "ECR Replication Action",
        "ECR Referrer Action",
    }
)
