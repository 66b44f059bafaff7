"""Google Artifact Registry (and Container Registry) notifications via Pub/Sub push → events.

Reference: cloud.google.com/artifact-registry/docs/configure-notifications ("Notification
examples") for the message, Pub/Sub's push subscription documentation for the envelope:
`{"message": {"data": base64, "messageId", "message_id", "publishTime", ...}, "subscription"}`,
where data decodes to `{"action": "INSERT" | "DELETE",
"digest": "HOST/PROJECT/REPO/IMAGE@sha256:…", "tag": "HOST/PROJECT/REPO/IMAGE:TAG"}` (either
reference may be absent).

Authentication: the push subscription's endpoint URL carries the secret,
`/hooks/registry/{name}?token=<secret>`. (Pub/Sub's OIDC push authentication is not used.)

Actions (`HANDLED`, `IGNORED`): the documentation names INSERT and DELETE, and both are ours.
Another action is unsupported. Pub/Sub redelivers anything it is not acknowledged with 2xx for
as long as the subscription retains the message, so an unsupported one is answered 200 with
`"unsupported"` (an acknowledgement) and counted apart.

Quirks:
- The repository is the reference's path after the host, PROJECT/REPO/IMAGE, as the registry
  names it; the host is dropped and never contacted. When both references are present they must
  name the same image.
- The documentation's digests are truncated (`sha256:6ec128e26cd5...`). A digest that is not a
  full sha256 is treated as absent and the tag is used; a message that then names nothing (the
  documentation's untagged INSERT) is malformed.
- Pub/Sub redelivers until acknowledged, with the same message id: `messageId` (or its
  snake-case twin `message_id`) is the dedup key. The "no wrapper" (unwrapped payload) push
  option is not supported: the envelope is required.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pydantic import Field, ValidationError

from bot.model.events import ImageDeleted, ImagePushed
from handlers.registry import auth
from handlers.registry.errors import MalformedPayload
from handlers.registry.parsed import (
    Parsed,
    Payload,
    checked,
    describe,
    full_digest,
    handler_for,
    ignored,
)

#: Artifact Registry's actions are upper-case words.
_ACTION = re.compile(r"[A-Z][A-Z_]{0,49}")


class Message(Payload):
    data: str
    message_id: str | None = Field(None, alias="messageId", min_length=1, max_length=200)
    message_id_snake: str | None = Field(None, alias="message_id", min_length=1, max_length=200)
    publish_time: datetime | None = Field(None, alias="publishTime")


class Envelope(Payload):
    message: Message
    subscription: str | None = None


class Notification(Payload):
    action: str
    digest: str | None = None
    tag: str | None = None


#: The configured secret as the `token` query parameter, compared in constant time.
verify = auth.query_token


@checked
def parse(headers: Mapping[str, str], body: bytes, registry: str) -> Parsed:
    envelope = Envelope.model_validate_json(body)
    message = envelope.message
    message_id = message.message_id or message.message_id_snake
    if message_id is None:
        raise MalformedPayload("message has no messageId")
    try:
        data = base64.b64decode(message.data, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise MalformedPayload("message.data is not base64") from None
    try:
        note = Notification.model_validate_json(data)
    except ValidationError as exc:
        raise MalformedPayload(f"in message.data: {describe(exc)}") from None
    handler = handler_for(note.action, HANDLED, IGNORED, what="action", shape=_ACTION)
    if handler is None:
        return ignored()
    return handler(note, message_id, message.publish_time, registry)


def _insert(
    note: Notification, message_id: str, published: datetime | None, registry: str
) -> Parsed:
    return Parsed(events=[ImagePushed(**_fields(note, message_id, registry), pushed_at=published)])


def _delete(
    note: Notification, message_id: str, published: datetime | None, registry: str
) -> Parsed:
    return Parsed(events=[ImageDeleted(**_fields(note, message_id, registry))])


def _fields(note: Notification, message_id: str, registry: str) -> dict[str, Any]:
    """Where the image is, from the two references, and the message id as the dedup key."""
    repositories = set()
    digest = tag = None
    if note.digest:
        repository, at, digest = _path(note.digest).partition("@")
        if not at:
            raise MalformedPayload("digest is not an IMAGE@DIGEST reference")
        repositories.add(repository)
        digest = full_digest(digest)  # truncated, as in the documentation: resolve by tag
    if note.tag:
        repository, colon, tag = _path(note.tag).rpartition(":")
        if not colon:
            raise MalformedPayload("tag is not an IMAGE:TAG reference")
        repositories.add(repository)
    if len(repositories) > 1:
        raise MalformedPayload("digest and tag name different images")
    if digest is None and tag is None:
        raise MalformedPayload("the notification names neither a sha256 digest nor a tag")
    return {
        "delivery_id": message_id,
        "registry": registry,
        "repository": repositories.pop(),
        "digest": digest,
        "tag": tag,
    }


def _path(reference: str) -> str:
    host, slash, path = reference.partition("/")
    if not (host and slash and path):
        raise MalformedPayload("an image reference without a host")
    return path


_Handler = Callable[[Notification, str, datetime | None, str], Parsed]
HANDLED: dict[str, _Handler] = {"INSERT": _insert, "DELETE": _delete}
#: Artifact Registry sends no other action.
IGNORED: frozenset[str] = frozenset()
