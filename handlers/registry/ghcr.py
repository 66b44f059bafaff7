"""GitHub Container Registry: GitHub `package` / `registry_package` webhooks → ImagePushed.

Reference: GitHub's webhook events documentation and octokit/webhooks `payload-examples`
(`package/published.docker`, `registry_package/published.docker`). The event name is the
`X-GitHub-Event` header, the delivery GUID is `X-GitHub-Delivery` (the dedup key; GitHub sends
the same GUID again when a delivery is redelivered), and the body is
`{"action", "package" | "registry_package": {..., "package_version": {...}}, "sender"}`.

Authentication: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` keyed with the
webhook secret, compared in constant time.

Quirks:
- Container packages are not labelled consistently: the published examples say
  `ecosystem: "docker"` with `package_type: "npm"`, live deliveries say `"CONTAINER"`. A package
  is a container image when any of ecosystem, package_type or registry.type says docker or
  container (any case).
- The digest is `package_version.version` (or `.name`) when that is a full sha256 digest;
  `container_metadata.tag.digest` in the examples is 40 hex digits and is not used. The tag is
  `container_metadata.tag.name` when non-empty; an untagged version is passed on by digest.
- The repository is the path of `package_version.package_url` (`ghcr.io/OWNER/NAME:TAG`, host and
  tag dropped), else `owner.login/name`. GHCR stores image names lower-cased (GitHub logins are
  case-insensitive and the registry rejects upper case), so it is lower-cased as GHCR does.
- `created_at` / `updated_at` of the version are `0001-01-01T00:00:00Z` in the examples, so no
  push time is taken from them.
- Other events: `ping` (sent when the hook is created) is ignored; anything else means the
  webhook subscribes to events it should not, and is refused as malformed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from bot.config import Registry
from bot.model.events import DIGEST_PATTERN, ImagePushed
from handlers.registry import auth
from handlers.registry.errors import MalformedPayload
from handlers.registry.parsed import Parsed, describe

_OBJECT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])
_DIGEST = re.compile(DIGEST_PATTERN)
#: GitHub event names are lower-case words; only such a header value goes into an error message.
_EVENT_NAME = re.compile(r"[a-z_]{1,50}")
CONTAINER_TYPES = frozenset({"docker", "container"})
PUSH_ACTIONS = frozenset({"published", "updated"})


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Tag(_Payload):
    name: str | None = None


class ContainerMetadata(_Payload):
    tag: Tag | None = None


class PackageVersion(_Payload):
    version: str | None = None
    name: str | None = None
    container_metadata: ContainerMetadata | None = None
    package_url: str | None = None


class Owner(_Payload):
    login: str


class PackageRegistry(_Payload):
    type: str | None = None


class Package(_Payload):
    name: str
    ecosystem: str | None = None
    package_type: str | None = None
    owner: Owner
    package_version: PackageVersion | None = None
    registry: PackageRegistry | None = None


class Sender(_Payload):
    login: str | None = None


class _Event(_Payload):
    action: str
    sender: Sender = Sender()


class PackageEvent(_Event):
    package: Package


class RegistryPackageEvent(_Event):
    registry_package: Package


def verify(
    headers: Mapping[str, str], query: Mapping[str, str], body: bytes, registry: Registry
) -> None:
    """`X-Hub-Signature-256` must be the HMAC-SHA256 of the raw body under the secret."""
    auth.hub_signature(headers, body, registry)


def parse(headers: Mapping[str, str], body: bytes, registry: str) -> Parsed:
    event = headers.get("X-GitHub-Event", "")
    delivery = headers.get("X-GitHub-Delivery", "")
    if not event:
        raise MalformedPayload("missing X-GitHub-Event header")
    if not delivery:
        raise MalformedPayload("missing X-GitHub-Delivery header")
    try:
        raw = _OBJECT.validate_json(body)
        if event in IGNORED:
            return Parsed(events=[], ignored=1)
        handler = HANDLED.get(event)
        if handler is None:
            shown = repr(event) if _EVENT_NAME.fullmatch(event) else "this"
            raise MalformedPayload(
                f"X-GitHub-Event {shown} is not a package event; "
                "subscribe the webhook to package events only"
            )
        return handler(raw, delivery, registry)
    except ValidationError as exc:
        raise MalformedPayload(describe(exc)) from None


def _package(raw: dict[str, Any], delivery: str, registry: str) -> Parsed:
    ev = PackageEvent.model_validate(raw)
    return _container_push(ev, ev.package, delivery, registry)


def _registry_package(raw: dict[str, Any], delivery: str, registry: str) -> Parsed:
    ev = RegistryPackageEvent.model_validate(raw)
    return _container_push(ev, ev.registry_package, delivery, registry)


def _container_push(ev: _Event, pkg: Package, delivery: str, registry: str) -> Parsed:
    kinds = (pkg.ecosystem, pkg.package_type, pkg.registry.type if pkg.registry else None)
    if ev.action not in PUSH_ACTIONS or not any(k and k.lower() in CONTAINER_TYPES for k in kinds):
        return Parsed(events=[], ignored=1)  # npm, maven, …, or a version being deleted
    version = pkg.package_version
    if version is None:
        raise MalformedPayload("a container package event without package_version")
    digest = next((d for d in (version.version, version.name) if d and _DIGEST.fullmatch(d)), None)
    meta_tag = version.container_metadata.tag if version.container_metadata else None
    tag = (meta_tag.name if meta_tag else None) or None
    if digest is None and tag is None:
        raise MalformedPayload("package_version names neither a sha256 digest nor a tag")
    return Parsed(
        events=[
            ImagePushed(
                delivery_id=delivery,
                registry=registry,
                repository=_repository(pkg, version),
                digest=digest,
                tag=tag,
                actor=ev.sender.login,
            )
        ]
    )


def _repository(pkg: Package, version: PackageVersion) -> str:
    """`ghcr.io/Owner/name:tag` → `owner/name`; the host is dropped and never contacted."""
    _host, slash, path = (version.package_url or "").partition("/")
    if slash and path:
        path = path.partition("@")[0]
        if ":" in path:
            path = path.rpartition(":")[0]
    else:
        path = f"{pkg.owner.login}/{pkg.name}"
    return path.lower()


HANDLED: dict[str, Callable[[dict[str, Any], str, str], Parsed]] = {
    "package": _package,
    "registry_package": _registry_package,
}
#: Valid, not ours: GitHub pings a hook once when it is created.
IGNORED = frozenset({"ping"})
