"""What every provider's parser shares: the payload base model, the result, and the steps.

A provider module (one per registry kind) declares two tables, so that a reader sees at a glance
what the source sends and what the bot does with it:
- `HANDLED`: each event type (or type and action) the bot acts on → the function that turns it
  into domain events;
- `IGNORED`: the other event types the source documents. They are valid, and the bot has nothing
  to do with them: they are answered 202 with `"ignored"` and counted in
  `crowsnest_events_ignored_total`.

`handler_for` looks a type up in them. A type in neither is `Unsupported`: the source sent a
type this bot does not know (one added after it was written, or a subscription it should not
have). The intake view answers that with 200 and `"unsupported"`, so that the source does not
retry it, and counts it apart from malformed bodies, as
`crowsnest_events_rejected_total{reason="unsupported"}`. A name of a shape the source never uses
is not a type at all, and the body is malformed (400).

`@checked` turns a pydantic ValidationError raised anywhere in a parse into MalformedPayload,
naming fields and messages but never quoting the input. `delivery_id` and `content_key` make the
dedup key for sources that send no delivery id.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from bot.infra.validation import describe_validation as describe
from bot.model.events import DIGEST_PATTERN, ImageDeleted, ImagePushed, ScanCompleted
from handlers.registry.errors import MalformedPayload, Unsupported

#: 9999-12-31T23:59:59Z: the last second a datetime can hold.
MAX_EPOCH = 253_402_300_799
#: The longest delivery id an event may carry (DomainEvent.delivery_id).
MAX_DELIVERY_ID = 200
_OBJECT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])
_DIGEST = re.compile(DIGEST_PATTERN)

Event = ImagePushed | ImageDeleted | ScanCompleted
P = ParamSpec("P")
R = TypeVar("R")
H = TypeVar("H")


class Payload(BaseModel):
    """The base of every model of a source's JSON: fields the bot does not read are dropped."""

    model_config = ConfigDict(extra="ignore", frozen=True)


@dataclass(frozen=True)
class Parsed:
    events: Sequence[Event] = field(default_factory=list)
    #: Valid events the bot has nothing to do with (pulls, blob uploads, other artifact types).
    ignored: int = 0
    #: Events of a type the provider neither handles nor ignores, in a delivery that also holds
    #: others (Docker Distribution batches); a delivery of only those raises Unsupported.
    unsupported: int = 0


def ignored(count: int = 1) -> Parsed:
    """A delivery of `count` events, all valid and of types the bot has nothing to do with."""
    return Parsed(events=[], ignored=count)


def checked(parse: Callable[P, R]) -> Callable[P, R]:
    """`parse`, with a ValidationError anywhere inside it raised as MalformedPayload."""

    @functools.wraps(parse)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return parse(*args, **kwargs)
        except ValidationError as exc:
            raise MalformedPayload(describe(exc)) from None

    return run


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (ValidationError for anything else: see `checked`)."""
    return _OBJECT.validate_json(body)


def handler_for(
    name: str,
    handled: Mapping[str, H],
    ignored: Set[str],
    *,
    what: str,
    shape: re.Pattern[str],
    hint: str = "",
) -> H | None:
    """The handler of event type `name`; None when the provider ignores it.

    Raises Unsupported for a type in neither table and MalformedPayload for a name that does not
    have `shape`, the shape of the source's type names (only such a name is ever repeated in
    an answer or a log line).
    """
    if name in ignored:
        return None
    handler = handled.get(name)
    if handler is not None:
        return handler
    if not shape.fullmatch(name):
        raise MalformedPayload(f"{what} is not one this source sends{hint}")
    raise Unsupported(f"{what} {name!r} is not one this bot handles; ignored as unsupported")


def full_digest(digest: str | None) -> str | None:
    """A full sha256 digest, or None: anything else cannot be looked up (a tag still can)."""
    if digest is None or not _DIGEST.fullmatch(digest):
        return None
    return digest


def delivery_id(*parts: object) -> str:
    """A dedup key for a source that sends no delivery id: the parts that tell one event from
    another (None as `-`), or, when that is longer than a delivery id may be, their sha256."""
    key = " ".join("-" if p is None else str(p) for p in parts)
    if len(key) <= MAX_DELIVERY_ID:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def content_key(body: bytes) -> str:
    """The sha256 of the raw body: the dedup key of a source that sends no id and no time."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


__all__ = [
    "MAX_EPOCH",
    "Event",
    "Parsed",
    "Payload",
    "checked",
    "content_key",
    "delivery_id",
    "describe",
    "full_digest",
    "handler_for",
    "ignored",
    "json_object",
]
