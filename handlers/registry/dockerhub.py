"""Docker Hub repository webhooks → ImagePushed.

Reference: docker/docs `docker-hub/webhooks.md` ("Example webhook payload"). Docker Hub sends
only one kind of webhook, the push: `{"callback_url", "push_data": {"pushed_at", "pusher",
"tag"}, "repository": {"repo_name", ...}}`.

Authentication: Docker Hub cannot sign or add headers, so the secret is in the webhook URL the
operator registers: `/hooks/registry/{name}?token=<secret>` (it therefore shows in any access
log in front of the bot; keep those private).

Quirks:
- No digest: the push names the tag only, and the pipeline resolves it against the registry.
- `callback_url` (for reporting a CI result back) is never called: no URL from a payload is.
- The legacy payload (`push_data.images`, no `tag`, `repo_name` like `_/nginx`) names nothing
  that could be checked; it is refused as malformed rather than acknowledged and dropped.
- Events (`HANDLED`, `IGNORED`): the push is the only one, and the body names no type, so a
  body that is not a push cannot be told from a malformed one: it is refused (400). Nothing
  here is ever unsupported.
- No delivery id: the dedup key is repo_name + tag + pushed_at (epoch seconds), which a
  redelivery repeats and a new push of the same tag does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from bot.model.events import ImagePushed
from handlers.registry import auth
from handlers.registry.errors import MalformedPayload
from handlers.registry.parsed import (
    MAX_EPOCH,
    Parsed,
    Payload,
    checked,
    delivery_id,
    json_object,
)


class PushData(Payload):
    pushed_at: int = Field(ge=0, le=MAX_EPOCH)
    pusher: str | None = None
    tag: str | None = None


class Repository(Payload):
    repo_name: str


class Push(Payload):
    push_data: PushData
    repository: Repository


#: The configured secret as the `token` query parameter, compared in constant time.
verify = auth.query_token


@checked
def parse(headers: Mapping[str, str], body: bytes, registry: str) -> Parsed:
    raw = json_object(body)
    return HANDLED[_kind(raw)](Push.model_validate(raw), registry)


def _kind(raw: dict[str, Any]) -> str:
    # The body names no event type; a push is the only webhook Docker Hub has.
    if "push_data" in raw:
        return "push"
    raise MalformedPayload("not a Docker Hub push webhook (no push_data)")


def _push(ev: Push, registry: str) -> Parsed:
    data = ev.push_data
    if not data.tag:
        raise MalformedPayload("push_data names no tag (legacy Docker Hub payload?)")
    repository = ev.repository.repo_name
    return Parsed(
        events=[
            ImagePushed(
                delivery_id=delivery_id(repository, data.tag, data.pushed_at),
                registry=registry,
                repository=repository,
                digest=None,
                tag=data.tag,
                actor=data.pusher,
                pushed_at=datetime.fromtimestamp(data.pushed_at, tz=UTC),
            )
        ]
    )


HANDLED: dict[str, Callable[[Push, str], Parsed]] = {"push": _push}
#: Docker Hub sends nothing else to a webhook.
IGNORED: frozenset[str] = frozenset()
