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
- Scan events carry a scan overview; a later issue ingests scan reports, so they are ignored for
  now. The CloudEvents payload format (`"type": "harbor.artifact.pushed"`) is not accepted:
  configure the policy with the Default format.
- Harbor has no delivery id. The dedup key is type + repository + digest + tag + occur_at:
  repository and tag are in it as well so that one artifact pushed under two tags, or one digest
  pushed to two projects in the same second, stay separate events.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from bot.config import Registry
from bot.model.events import DIGEST_PATTERN, ImageDeleted, ImagePushed, ScanCompleted
from handlers.registry import auth
from handlers.registry.errors import MalformedPayload, Unauthorized
from handlers.registry.parsed import Parsed, describe

#: 9999-12-31T23:59:59Z: the last second a datetime can hold.
MAX_EPOCH = 253_402_300_799
_OBJECT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])
_DIGEST = re.compile(DIGEST_PATTERN)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Head(_Payload):
    type: str


class Resource(_Payload):
    digest: str | None = None
    tag: str | None = None


class Repository(_Payload):
    repo_full_name: str


class EventData(_Payload):
    resources: list[Resource] = Field(min_length=1, max_length=1000)
    repository: Repository


class ArtifactEvent(_Payload):
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


def parse(headers: Mapping[str, str], body: bytes, registry: str) -> Parsed:
    try:
        raw = _OBJECT.validate_json(body)
        kind = _Head.model_validate(raw).type
        if kind in IGNORED:
            return Parsed(events=[], ignored=1)
        handler = HANDLED.get(kind)
        if handler is None:
            raise MalformedPayload(
                "type is not a Harbor event name (is the policy's payload format Default?)"
            )
        return handler(ArtifactEvent.model_validate(raw), registry)
    except ValidationError as exc:
        raise MalformedPayload(describe(exc)) from None


def _push_artifact(ev: ArtifactEvent, registry: str) -> Parsed:
    pushed_at = datetime.fromtimestamp(ev.occur_at, tz=UTC) if ev.occur_at is not None else None
    events: list[ImagePushed | ImageDeleted | ScanCompleted] = []
    for digest, tag in _references(ev):
        events.append(
            ImagePushed(
                delivery_id=_delivery_id(ev, digest, tag),
                registry=registry,
                repository=ev.event_data.repository.repo_full_name,
                digest=digest,
                tag=tag,
                actor=ev.operator,
                pushed_at=pushed_at,
            )
        )
    return Parsed(events=events)


def _delete_artifact(ev: ArtifactEvent, registry: str) -> Parsed:
    # DELETE_ARTIFACT removes the artifact itself (every tag on it), so the digest is the point.
    events: list[ImagePushed | ImageDeleted | ScanCompleted] = [
        ImageDeleted(
            delivery_id=_delivery_id(ev, digest, tag),
            registry=registry,
            repository=ev.event_data.repository.repo_full_name,
            digest=digest,
            tag=tag,
        )
        for digest, tag in _references(ev)
    ]
    return Parsed(events=events)


def _references(ev: ArtifactEvent) -> list[tuple[str | None, str | None]]:
    refs = []
    for res in ev.event_data.resources:
        digest = _usable_digest(res.digest)
        tag = res.tag or None
        if tag is not None and (tag == res.digest or tag.startswith("sha256:")):
            tag = None  # pushed by digest: Harbor repeats the digest in `tag`
        if digest is None and tag is None:
            raise MalformedPayload("an artifact names neither a sha256 digest nor a tag")
        refs.append((digest, tag))
    return refs


def _usable_digest(digest: str | None) -> str | None:
    """A full sha256 digest, or None: anything else cannot be looked up, the tag still can."""
    if digest is None or not _DIGEST.fullmatch(digest):
        return None
    return digest


def _delivery_id(ev: ArtifactEvent, digest: str | None, tag: str | None) -> str:
    parts = (ev.type, ev.event_data.repository.repo_full_name, digest, tag, ev.occur_at)
    key = " ".join("-" if p is None else str(p) for p in parts)
    if len(key) <= 200:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _scanning_completed(ev: ArtifactEvent, registry: str) -> Parsed:
    """Harbor's scanner is done: the report is fetched from Harbor's API (never from the URL
    in the payload) when the event is processed."""
    events: list[ImagePushed | ImageDeleted | ScanCompleted] = [
        ScanCompleted(
            delivery_id=_delivery_id(ev, digest, tag),
            registry=registry,
            repository=ev.event_data.repository.repo_full_name,
            digest=digest,
            tag=tag,
        )
        for digest, tag in _references(ev)
        if digest is not None
    ]
    return Parsed(events=events, ignored=len(ev.event_data.resources) - len(events))


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
