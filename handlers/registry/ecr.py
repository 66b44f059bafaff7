"""Amazon ECR events, delivered by an EventBridge rule to an API destination → events.

Reference: Amazon ECR User Guide, "Amazon ECR events and EventBridge". Each request is one
EventBridge event `{"version", "id", "detail-type", "source": "aws.ecr", "time", "detail"}`; for
`ECR Image Action` the detail is `{"result", "repository-name", "image-digest", "action-type",
"image-tag"}`.

Authentication: the API destination's connection adds `Authorization: Bearer <secret>` (API key
auth), compared in constant time. EventBridge retries on 5xx and 429, and may deliver an event
more than once: the event `id` is the dedup key.

Quirks:
- Only `ECR Image Action` PUSH and DELETE with result SUCCESS are ours; FAILURE results and the
  other detail-types (image scans, scan setting changes, replication, pull-through cache) are
  ignored. An image action must come from `source: aws.ecr` (only AWS can emit `aws.*`).
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

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from bot.config import Registry
from bot.model.events import DIGEST_PATTERN, ImageDeleted, ImagePushed
from handlers.registry import auth
from handlers.registry.errors import MalformedPayload
from handlers.registry.parsed import Parsed, describe

_OBJECT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])
_DIGEST = re.compile(DIGEST_PATTERN)
IMAGE_ACTION = "ECR Image Action"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Head(_Payload):
    detail_type: str = Field(alias="detail-type")


class ImageActionDetail(_Payload):
    result: str
    repository_name: str = Field(alias="repository-name")
    image_digest: str | None = Field(None, alias="image-digest")
    action_type: str = Field(alias="action-type")
    image_tag: str | None = Field(None, alias="image-tag")


class ImageAction(_Payload):
    id: str = Field(min_length=1, max_length=200)
    source: str
    time: datetime | None = None
    detail: ImageActionDetail


def verify(
    headers: Mapping[str, str], query: Mapping[str, str], body: bytes, registry: Registry
) -> None:
    """The configured secret, as `Authorization: Bearer <secret>`, compared in constant time."""
    auth.bearer_header(headers, registry)


def parse(headers: Mapping[str, str], body: bytes, registry: str) -> Parsed:
    try:
        raw = _OBJECT.validate_json(body)
        detail_type = _Head.model_validate(raw).detail_type
        if detail_type in IGNORED:
            return Parsed(events=[], ignored=1)
        if detail_type != IMAGE_ACTION:
            raise MalformedPayload("detail-type is not an ECR event this bot knows")
        ev = ImageAction.model_validate(raw)
        handler = HANDLED.get(f"{IMAGE_ACTION} {ev.detail.action_type}")
        if handler is None:
            raise MalformedPayload("action-type is not PUSH or DELETE")
        if ev.source != "aws.ecr":
            raise MalformedPayload("an ECR Image Action whose source is not aws.ecr")
        if ev.detail.result != "SUCCESS":
            return Parsed(events=[], ignored=1)  # the push or delete did not happen
        return handler(ev, registry)
    except ValidationError as exc:
        raise MalformedPayload(describe(exc)) from None


def _push(ev: ImageAction, registry: str) -> Parsed:
    digest, tag = _reference(ev)
    return Parsed(
        events=[
            ImagePushed(
                delivery_id=ev.id,
                registry=registry,
                repository=ev.detail.repository_name,
                digest=digest,
                tag=tag,
                pushed_at=ev.time,
            )
        ]
    )


def _delete(ev: ImageAction, registry: str) -> Parsed:
    digest, tag = _reference(ev)
    return Parsed(
        events=[
            ImageDeleted(
                delivery_id=ev.id,
                registry=registry,
                repository=ev.detail.repository_name,
                digest=digest,
                tag=tag,
            )
        ]
    )


def _reference(ev: ImageAction) -> tuple[str | None, str | None]:
    d = ev.detail
    # Not a full sha256 (the documentation's sample is truncated): no digest, resolve by tag.
    digest = d.image_digest if d.image_digest and _DIGEST.fullmatch(d.image_digest) else None
    tag = d.image_tag or None
    if digest is None and tag is None:
        raise MalformedPayload("the image action names neither a sha256 digest nor a tag")
    return digest, tag


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
