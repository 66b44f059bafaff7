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
- Events by `X-GitHub-Event` and action (`HANDLED`, `IGNORED`): `package` and
  `registry_package`, `published` or `updated`, are ours (packages that are not container
  images among them are ignored); `ping` (sent when the hook is created) is ignored. Any other
  event or action means the webhook subscribes to more than it should, or GitHub added one: it
  is unsupported. GitHub does not retry a failed delivery but lists it as failed in the hook's
  settings, so an unsupported one is answered 200 with `"unsupported"` and counted apart
  (`crowsnest_events_rejected_total{reason="unsupported"}`), which keeps that list for real
  failures. A header value that is not an event name at all is malformed (400).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from bot.model.events import ImagePushed
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

#: GitHub event names and actions are lower-case words; only such a value goes into an answer.
_NAME = re.compile(r"[a-z_]{1,50}(?: [a-z_]{1,50})?")
CONTAINER_TYPES = frozenset({"docker", "container"})


class Tag(Payload):
    name: str | None = None


class ContainerMetadata(Payload):
    tag: Tag | None = None


class PackageVersion(Payload):
    version: str | None = None
    name: str | None = None
    container_metadata: ContainerMetadata | None = None
    package_url: str | None = None


class Owner(Payload):
    login: str


class PackageRegistry(Payload):
    type: str | None = None


class Package(Payload):
    name: str
    ecosystem: str | None = None
    package_type: str | None = None
    owner: Owner
    package_version: PackageVersion | None = None
    registry: PackageRegistry | None = None


class Sender(Payload):
    login: str | None = None


class _Event(Payload):
    action: str
    sender: Sender = Sender()


class PackageEvent(_Event):
    package: Package


class RegistryPackageEvent(_Event):
    registry_package: Package


#: `X-Hub-Signature-256` must be the HMAC-SHA256 of the raw body under the secret.
verify = auth.hub_signature


@checked
def parse(headers: Mapping[str, str], body: bytes, registry: str) -> Parsed:
    event = headers.get("X-GitHub-Event", "")
    delivery = headers.get("X-GitHub-Delivery", "")
    if not event:
        raise MalformedPayload("missing X-GitHub-Event header")
    if not delivery:
        raise MalformedPayload("missing X-GitHub-Delivery header")
    raw = json_object(body)
    name = event
    if event in _EVENTS:  # a package event names its action in the body
        name = f"{event} {_Event.model_validate(raw).action}"
    handler = handler_for(name, HANDLED, IGNORED, what="event", shape=_NAME)
    if handler is None:
        return ignored()
    return handler(raw, delivery, registry)


def _package(raw: dict[str, Any], delivery: str, registry: str) -> Parsed:
    ev = PackageEvent.model_validate(raw)
    return _container_push(ev, ev.package, delivery, registry)


def _registry_package(raw: dict[str, Any], delivery: str, registry: str) -> Parsed:
    ev = RegistryPackageEvent.model_validate(raw)
    return _container_push(ev, ev.registry_package, delivery, registry)


def _container_push(ev: _Event, pkg: Package, delivery: str, registry: str) -> Parsed:
    kinds = (pkg.ecosystem, pkg.package_type, pkg.registry.type if pkg.registry else None)
    if not any(k and k.lower() in CONTAINER_TYPES for k in kinds):
        return ignored()  # npm, maven, …
    version = pkg.package_version
    if version is None:
        raise MalformedPayload("a container package event without package_version")
    digest = full_digest(version.version) or full_digest(version.name)
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


#: `X-GitHub-Event` and action, as `"event action"`.
HANDLED: dict[str, Callable[[dict[str, Any], str, str], Parsed]] = {
    "package published": _package,
    "package updated": _package,
    "registry_package published": _registry_package,
    "registry_package updated": _registry_package,
}
#: Valid, not ours: GitHub pings a hook once when it is created.
IGNORED = frozenset({"ping"})
_EVENTS = frozenset(name.partition(" ")[0] for name in HANDLED)
