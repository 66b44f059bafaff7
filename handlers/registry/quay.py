"""Quay repository notifications (webhook method) → one ImagePushed per updated tag.

Reference: Quay's "Repository Notifications" guide and quay/quay
`notifications/notificationevent.py` (`get_sample_data` of each event) with
`notifications/__init__.py` (`build_repository_event_data`). The body is the event data itself:
`{"repository": "ns/name", "namespace", "name", "docker_url", "homepage", ...event fields}`.

Authentication: the webhook method sends no secret and no signature, so the secret is in the
URL the operator registers: `/hooks/registry/{name}?token=<secret>`.

Quirks:
- The body names no event. The kind is told by shape: `updated_tags` is a repo_push,
  `build_id` a build event, `vulnerability`/`vulnerabilities` vulnerability_found, `message` a
  mirror sync event, `tags` alone an image expiry (inferred; Quay publishes no sample of it).
  Only repo_push is ours; the others are ignored, and a body of no known shape is malformed.
- `updated_tags` is a list of tag names (current Quay) or, in the guide's example, an object
  mapping tag → image id. The image id is a legacy v1 id, not a manifest digest, so every event
  has digest None and the pipeline resolves the tag.
- No time field and no delivery id exist, so the dedup key is the sha256 of the raw body plus
  the tag (each tag is its own event). Caveat: re-pushing the same tag (list form) produces a
  byte-identical body, which is then taken for a redelivery.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from bot.config import Registry
from bot.model.events import ImagePushed
from handlers.registry import auth
from handlers.registry.errors import MalformedPayload
from handlers.registry.parsed import Parsed, describe

_OBJECT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RepoPush(_Payload):
    repository: str
    updated_tags: (
        Annotated[list[str], Field(min_length=1, max_length=1000)]
        | Annotated[dict[str, Any], Field(min_length=1, max_length=1000)]
    )


def verify(
    headers: Mapping[str, str], query: Mapping[str, str], body: bytes, registry: Registry
) -> None:
    """The configured secret as the `token` query parameter, compared in constant time."""
    auth.query_token(query, registry)


def parse(headers: Mapping[str, str], body: bytes, registry: str) -> Parsed:
    try:
        raw = _OBJECT.validate_json(body)
        kind = _kind(raw)
        if kind in IGNORED:
            return Parsed(events=[], ignored=1)
        return HANDLED[kind](RepoPush.model_validate(raw), body, registry)
    except ValidationError as exc:
        raise MalformedPayload(describe(exc)) from None


def _kind(raw: dict[str, Any]) -> str:
    if "updated_tags" in raw:
        return "repo_push"
    if "build_id" in raw:
        return "build_*"
    if {"vulnerability", "vulnerabilities", "vulnerable_index_report_created"} & raw.keys():
        return "vulnerability_found"
    if "message" in raw:
        return "repo_mirror_sync_*"
    if "repository" in raw and "tags" in raw:
        return "repo_image_expiry"
    raise MalformedPayload("not a Quay repository notification")


def _repo_push(ev: RepoPush, body: bytes, registry: str) -> Parsed:
    tags = sorted(set(ev.updated_tags))
    content = "sha256:" + hashlib.sha256(body).hexdigest()
    return Parsed(
        events=[
            ImagePushed(
                delivery_id=f"{content} {tag}",
                registry=registry,
                repository=ev.repository,
                digest=None,
                tag=tag,
            )
            for tag in tags
        ]
    )


HANDLED: dict[str, Callable[[RepoPush, bytes, str], Parsed]] = {"repo_push": _repo_push}
#: Valid Quay notifications, not ours. `*` names a family that shares one shape.
IGNORED = frozenset({"build_*", "vulnerability_found", "repo_mirror_sync_*", "repo_image_expiry"})
