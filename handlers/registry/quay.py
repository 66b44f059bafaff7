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
  Only repo_push is ours (`HANDLED`); the others are ignored (`IGNORED`). With no type named,
  a body of no known shape cannot be told from a malformed one: it is refused (400), and
  nothing here is ever unsupported.
- `updated_tags` is a list of tag names (current Quay) or, in the guide's example, an object
  mapping tag → image id. The image id is a legacy v1 id, not a manifest digest, so every event
  has digest None and the pipeline resolves the tag.
- No time field and no delivery id exist, so the dedup key is the sha256 of the raw body plus
  the tag (each tag is its own event). Caveat: re-pushing the same tag (list form) produces a
  byte-identical body, which is then taken for a redelivery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import Field

from bot.model.events import ImagePushed
from handlers.registry import auth
from handlers.registry.errors import MalformedPayload
from handlers.registry.parsed import (
    Parsed,
    Payload,
    checked,
    content_key,
    delivery_id,
    ignored,
    json_object,
)


class RepoPush(Payload):
    repository: str
    updated_tags: (
        Annotated[list[str], Field(min_length=1, max_length=1000)]
        | Annotated[dict[str, Any], Field(min_length=1, max_length=1000)]
    )


#: The configured secret as the `token` query parameter, compared in constant time.
verify = auth.query_token


@checked
def parse(headers: Mapping[str, str], body: bytes, registry: str) -> Parsed:
    raw = json_object(body)
    kind = _kind(raw)
    if kind in IGNORED:
        return ignored()
    return HANDLED[kind](RepoPush.model_validate(raw), body, registry)


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
    content = content_key(body)
    return Parsed(
        events=[
            ImagePushed(
                delivery_id=delivery_id(content, tag),
                registry=registry,
                repository=ev.repository,
                digest=None,
                tag=tag,
            )
            for tag in sorted(set(ev.updated_tags))
        ]
    )


HANDLED: dict[str, Callable[[RepoPush, bytes, str], Parsed]] = {"repo_push": _repo_push}
#: Valid Quay notifications, not ours. `*` names a family that shares one shape.
IGNORED = frozenset({"build_*", "vulnerability_found", "repo_mirror_sync_*", "repo_image_expiry"})
