"""How registries prove who they are: one place for the constant-time secret comparisons."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from bot.config import Registry
from bot.infra.web import same_secret
from handlers.registry.errors import Unauthorized


def as_bytes(text: str) -> bytes:
    """UTF-8 that never raises, so an odd header cannot turn a 401 into a 500."""
    return text.encode("utf-8", "surrogatepass")


def secret_of(registry: Registry) -> str:
    """The configured webhook secret; with none (or an empty one) every request is refused."""
    secret = registry.webhook_secret.get_secret_value() if registry.webhook_secret else ""
    if not secret:
        raise Unauthorized(f"registry {registry.name!r} has no webhook_secret configured")
    return secret


same = same_secret


# Each check below is a provider's whole `verify(headers, query, body, registry)`.


def bearer_header(
    headers: Mapping[str, str], query: Mapping[str, str], body: bytes, registry: Registry
) -> None:
    """`Authorization: Bearer <secret>` (distribution, gitlab, ecr)."""
    if not same(headers.get("Authorization", ""), f"Bearer {secret_of(registry)}"):
        raise Unauthorized("missing or wrong Authorization header")


def query_token(
    headers: Mapping[str, str], query: Mapping[str, str], body: bytes, registry: Registry
) -> None:
    """`?token=<secret>` on the webhook URL (dockerhub, quay, artifact-registry)."""
    if not same(query.get("token", ""), secret_of(registry)):
        raise Unauthorized("missing or wrong token query parameter")


def hub_signature(
    headers: Mapping[str, str], query: Mapping[str, str], body: bytes, registry: Registry
) -> None:
    """`X-Hub-Signature-256: sha256=<HMAC-SHA256 of the raw body>` (GitHub)."""
    mac = hmac.new(as_bytes(secret_of(registry)), body, hashlib.sha256).hexdigest()
    if not same(headers.get("X-Hub-Signature-256", ""), f"sha256={mac}"):
        raise Unauthorized("missing or wrong X-Hub-Signature-256")
