"""POST /hooks/k8s/admission: `admission.k8s.io/v1` AdmissionReview in, the same uid out.

Only the API server may ask: it proves itself with `Authorization: Bearer <[admission] token>`
(from its admission-control kubeconfig) or with a client certificate signed by
`[admission] client_ca`. Anyone else gets 401 and nothing is stored, because a review's
findings go to Slack and can page on-call.

Every body gets an answer Kubernetes can read, never a 500:

* a review whose `request.uid` can be read gets an AdmissionReview for that uid. When it is not
  a review the bot can judge (another `apiVersion`, a name longer than Kubernetes allows, …),
  `response.allowed` follows the mode (`audit` allows and warns, `enforce` denies, as a
  `failurePolicy: Fail` would) and `response.status` (code 400) says why;
* without a readable uid there is nobody to answer, so it is a 400 with `{"error": "…"}`, which
  the API server treats as a failed call (its `failurePolicy` decides).

Otherwise the answer is the policy's verdict. The workload also goes into the inbox, so its
findings reach the owning team even when the answer was "allowed" (audit mode), without making
the API server wait on Slack. `pods/ephemeralcontainers` reviews (a `kubectl debug`) carry the
whole Pod, so its ephemeral containers are judged like any other container.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from bot.cluster.admission import Verdict, seen_event
from bot.cluster.policy import Workload
from bot.config import Admission
from bot.core import Core
from bot.infra.validation import describe_validation
from bot.infra.web import json_error, same_secret
from bot.intake.intake import IntakeUnavailable
from bot.model.events import WorkloadSeen

log = logging.getLogger(__name__)
SOURCE = "k8s-admission"
API_VERSION = "admission.k8s.io/v1"
#: Kubernetes uids are UUIDs; anything far longer is not from an API server and is not echoed.
MAX_UID = 128
#: The longest name an object may have (a DNS subdomain), and a namespace (a DNS label).
MAX_NAME, MAX_NAMESPACE = 253, 63


@dataclass(frozen=True)
class Unanswerable:
    """No `request.uid` to answer to: a 400 with a JSON error."""

    message: str


@dataclass(frozen=True)
class Unreviewable:
    """A uid to answer, but not a review the bot can judge: allowed or denied by the mode."""

    uid: str
    message: str


@dataclass(frozen=True)
class Review:
    """A review to judge; `workload` is None when there is nothing to (a DELETE, a non-workload)."""

    uid: str
    workload: Workload | None = None
    event: WorkloadSeen | None = None


def parse_review(body: bytes, cluster: str) -> Unanswerable | Unreviewable | Review:
    """What `body` asks, without trusting any of it: never raises on any input."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return Unanswerable("not JSON (or nested too deep)")
    req = doc.get("request") if isinstance(doc, dict) else None
    if not isinstance(req, dict):
        return Unanswerable("not an AdmissionReview: no request object")
    uid = req.get("uid")
    if not isinstance(uid, str) or not uid or len(uid) > MAX_UID:
        return Unanswerable("the AdmissionReview has no request.uid (a string of 1 to 128 chars)")
    if doc.get("kind") != "AdmissionReview" or doc.get("apiVersion") != API_VERSION:
        found = f"{_shown(doc.get('kind'))} {_shown(doc.get('apiVersion'))}"
        return Unreviewable(uid, f"only AdmissionReview {API_VERSION} is reviewed, not {found}")
    if req.get("operation") in ("DELETE", "CONNECT"):
        return Review(uid)
    for key, limit in (("name", MAX_NAME), ("namespace", MAX_NAMESPACE)):
        value = req.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            return Unreviewable(uid, f"request.{key} is not a string of at most {limit} chars")
    workload = Workload.from_admission_review(doc, cluster=cluster)
    if workload is None:
        return Review(uid)
    if len(workload.name) > MAX_NAME or len(workload.namespace) > MAX_NAMESPACE:
        return Unreviewable(
            uid, f"the object's name or namespace is longer than Kubernetes allows ({MAX_NAME})"
        )
    try:
        event = seen_event(workload, req["object"])
    except ValidationError as exc:
        return Unreviewable(uid, f"not an object Kubernetes would send: {describe_validation(exc)}")
    return Review(uid, workload, event)


def _shown(value: Any) -> str:
    """A value from the body, quoted and cut short: it is echoed back in the answer."""
    return json.dumps(value)[:80] if isinstance(value, str) else type(value).__name__


def response(
    uid: str, verdict: Verdict, *, code: int = 403, reason: str = "Forbidden"
) -> dict[str, Any]:
    answer: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if verdict.warnings:
        answer["warnings"] = list(verdict.warnings)
    if not verdict.allowed or code != 403:
        answer["status"] = {"code": code, "reason": reason, "message": verdict.message}
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": answer}


def unreviewable(refusal: Unreviewable, mode: str) -> dict[str, Any]:
    """The answer to a review the bot cannot judge: `audit` allows with a warning, `enforce`
    denies, both with a 400 status that says why."""
    message = f"Crow's Nest could not review this request: {refusal.message}"
    verdict = Verdict(mode == "audit", message, (message[:250],))
    return response(refusal.uid, verdict, code=400, reason="BadRequest")


def refusal(request: web.Request, config: Admission) -> str | None:
    """Why this caller may not ask for a review, or None when it proved itself.

    A configured token and a client certificate (when `client_ca` is set, the TLS handshake
    has already verified any certificate offered) are each enough on their own.
    """
    token = config.token.get_secret_value() if config.token is not None else ""
    transport = request.transport
    if config.client_ca is not None and transport and transport.get_extra_info("peercert"):
        return None
    if token:
        if same_secret(request.headers.get("Authorization", ""), f"Bearer {token}"):
            return None
        if config.client_ca is not None:
            return "missing or wrong Authorization header, and no client certificate"
        return "missing or wrong Authorization header"
    if config.client_ca is not None:
        return "no client certificate signed by [admission] client_ca"
    if config.allow_unauthenticated:
        return None
    return "no [admission] token or client_ca is configured, so every review is refused"


def mount(app: web.Application, core: Core) -> None:
    pending: set[asyncio.Task[None]] = set()

    async def review(request: web.Request) -> web.Response:
        settings = core.settings.admission
        if (why := refusal(request, settings)) is not None:
            core.metrics.events_rejected.labels(SOURCE, "401").inc()
            return json_error(401, why)
        parsed = parse_review(await request.read(), settings.cluster)
        if isinstance(parsed, Unanswerable):
            core.metrics.events_rejected.labels(SOURCE, "400").inc()
            return json_error(400, parsed.message)
        if isinstance(parsed, Unreviewable):
            core.metrics.events_rejected.labels(SOURCE, "400").inc()
            return web.json_response(unreviewable(parsed, settings.mode))
        if parsed.workload is None or parsed.event is None:
            return web.json_response(response(parsed.uid, Verdict(True)))
        verdict = await core.admission.review(parsed.workload, core.clock.now())
        # The API server waits on this answer; the findings' trip to Slack need not make it
        # wait for a commit (the watcher and the next admission see the workload again).
        task = asyncio.create_task(queue(parsed.event))
        pending.add(task)
        task.add_done_callback(pending.discard)
        return web.json_response(response(parsed.uid, verdict))

    async def queue(event: WorkloadSeen) -> None:
        try:
            await core.intake.accept(SOURCE, [event])
        except IntakeUnavailable:
            log.warning("admission: findings of %s/%s not queued", event.namespace, event.name)

    app.router.add_post("/hooks/k8s/admission", review)
