"""Harbor webhooks (HTTP endpoint, "Default" payload format, Harbor >= 2.0 event names) → events.

Reference: goharbor/website `configure-webhooks.md` ("Payload Format") and Harbor's
`src/pkg/notifier/event/topic.go` for the event names. One delivery is
`{"type", "occur_at", "operator", "event_data": {"resources": [...], "repository": {...}}}`;
each resource is one artifact (`digest`, `tag`, `resource_url`).

Authentication: Harbor sends the policy's "Auth Header" value verbatim as `Authorization`; the
operator may or may not have typed `Bearer ` in front of it, so both forms are accepted.

Quirks:
- `repository.repo_full_name` is the repository path as Harbor reports it (project/name, with
  further slashes for nested names); Harbor only allows lower-case names, so it is used as sent.
- An artifact pushed by digest reports the digest again as its `tag`
  (registry.cern.ch sample): that is no tag, and the push is passed on by digest alone.
- `resource_url` is built from Harbor's external URL setting and is never used.
- The CloudEvents payload format (`"type": "harbor.artifact.pushed"`) is not accepted: its type
  is not of the shape of Harbor's own names (upper-case words), so it is malformed (400, which
  Harbor shows as a failed delivery): configure the policy with the Default format.
- Events by type (`HANDLED`, `IGNORED`): PUSH_ARTIFACT, DELETE_ARTIFACT and SCANNING_COMPLETED
  are ours (the scan report is fetched from Harbor's API); pulls, failed or stopped scans,
  quotas, replication, retention and charts are ignored. Harbor retries a webhook that is not
  answered 2xx, so a type in neither table (one a later Harbor adds) is answered 200 with
  `"unsupported"` and counted apart, rather than refused.
- Harbor has no delivery id. The dedup key is type + repository + digest + tag + occur_at:
  repository and tag are in it as well so that one artifact pushed under two tags, or one digest
  pushed to two projects in the same second, stay separate events.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from bot.config import Registry
from bot.model.events import ImageDeleted, ImagePushed, ScanCompleted
from handlers.registry import auth
from handlers.registry.errors import MalformedPayload, Unauthorized
from handlers.registry.parsed import (
    MAX_EPOCH,
    Event,
    Parsed,
    Payload,
    checked,
    delivery_id,
    full_digest,
    handler_for,
    ignored,
    json_object,
)

#: Harbor's event names are upper-case words (PUSH_ARTIFACT).
_TYPE = re.compile(r"[A-Z][A-Z_]{0,49}")


class _Head(Payload):
    type: str


class Resource(Payload):
    digest: str | None = None
    tag: str | None = None


class Repository(Payload):
    repo_full_name: str


class EventData(Payload):
    resources: list[Resource] = Field(min_length=1, max_length=1000)
    repository: Repository


class ArtifactEvent(Payload):
    type: str
    #: Absent in some SCANNING_COMPLETED events as Harbor publishes them.
    occur_at: int | None = Field(None, ge=0, le=MAX_EPOCH)
    operator: str | None = None
    event_data: EventData


def verify(
    headers: Mapping[str, str], query: Mapping[str, str], body: bytes, registry: Registry
) -> None:
    """`Authorization` equal to the configured secret, with or without `Bearer `, constant-time."""
    secret = auth.secret_of(registry)
    sent = headers.get("Authorization", "")
    # Both comparisons always run (`|`, not `or`), so the timing does not tell which form failed.
    plain = auth.same(sent, secret)
    bearer = auth.same(sent, f"Bearer {secret}")
    if not (plain | bearer):
        raise Unauthorized("missing or wrong Authorization header")


@checked
def parse(headers: Mapping[str, str], body: bytes, registry: str) -> Parsed:
    raw = json_object(body)
    handler = handler_for(
        _Head.model_validate(raw).type,
        HANDLED,
        IGNORED,
        what="type",
        shape=_TYPE,
        hint=" (is the policy's payload format Default?)",
    )
    if handler is None:
        return ignored()
    return handler(ArtifactEvent.model_validate(raw), registry)


def _push_artifact(ev: ArtifactEvent, registry: str) -> Parsed:
    pushed_at = datetime.fromtimestamp(ev.occur_at, tz=UTC) if ev.occur_at is not None else None
    events: list[Event] = [
        ImagePushed(**_fields(ev, registry, digest, tag), actor=ev.operator, pushed_at=pushed_at)
        for digest, tag in _references(ev)
    ]
    return Parsed(events=events)


def _delete_artifact(ev: ArtifactEvent, registry: str) -> Parsed:
    # DELETE_ARTIFACT removes the artifact itself (every tag on it), so the digest is the point.
    events: list[Event] = [
        ImageDeleted(**_fields(ev, registry, digest, tag)) for digest, tag in _references(ev)
    ]
    return Parsed(events=events)


def _scanning_completed(ev: ArtifactEvent, registry: str) -> Parsed:
    """Harbor's scanner is done: the report is fetched from Harbor's API (never from the URL
    in the payload) when the event is processed."""
    events: list[Event] = [
        ScanCompleted(**_fields(ev, registry, digest, tag))
        for digest, tag in _references(ev)
        if digest is not None
    ]
    return Parsed(events=events, ignored=len(ev.event_data.resources) - len(events))


def _fields(
    ev: ArtifactEvent, registry: str, digest: str | None, tag: str | None
) -> dict[str, Any]:
    """What every event made of one artifact of `ev` says: where it is, and its dedup key."""
    repository = ev.event_data.repository.repo_full_name
    return {
        "delivery_id": delivery_id(ev.type, repository, digest, tag, ev.occur_at),
        "registry": registry,
        "repository": repository,
        "digest": digest,
        "tag": tag,
    }


def _references(ev: ArtifactEvent) -> list[tuple[str | None, str | None]]:
    refs = []
    for res in ev.event_data.resources:
        digest = full_digest(res.digest)
        tag = res.tag or None
        if tag is not None and (tag == res.digest or tag.startswith("sha256:")):
            tag = None  # pushed by digest: Harbor repeats the digest in `tag`
        if digest is None and tag is None:
            raise MalformedPayload("an artifact names neither a sha256 digest nor a tag")
        refs.append((digest, tag))
    return refs


HANDLED: dict[str, Callable[[ArtifactEvent, str], Parsed]] = {
    "PUSH_ARTIFACT": _push_artifact,
    "DELETE_ARTIFACT": _delete_artifact,
    "SCANNING_COMPLETED": _scanning_completed,
}
#: Valid Harbor webhook events the bot has nothing to do with.
IGNORED = frozenset(
    {
        "PULL_ARTIFACT",
        "SCANNING_FAILED",
        "SCANNING_STOPPED",
        "QUOTA_EXCEED",
        "QUOTA_WARNING",
        "REPLICATION",
        "TAG_RETENTION",
        "UPLOAD_CHART",
        "DOWNLOAD_CHART",
        "DELETE_CHART",
    }
)
