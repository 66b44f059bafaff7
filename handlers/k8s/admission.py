"""POST /hooks/k8s/admission: `admission.k8s.io/v1` AdmissionReview in, the same uid out.

Kubernetes authenticates itself by calling over TLS; the review's answer is the policy's
verdict. The workload also goes into the inbox, so its findings reach the owning team even
when the answer was "allowed" (audit mode), without making the API server wait on Slack.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from bot.admission import Verdict, seen_event
from bot.app import Core
from bot.checks.policy import Workload
from bot.events import WorkloadSeen
from bot.intake import IntakeUnavailable
from bot.web import json_error

log = logging.getLogger(__name__)
SOURCE = "k8s-admission"


def response(uid: str, verdict: Verdict) -> dict[str, Any]:
    answer: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if verdict.warnings:
        answer["warnings"] = list(verdict.warnings)
    if not verdict.allowed:
        answer["status"] = {"code": 403, "reason": "Forbidden", "message": verdict.message}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer}


def mount(app: web.Application, core: Core) -> None:
    pending: set[asyncio.Task[None]] = set()

    async def review(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except (ValueError, RecursionError):
            return json_error(400, "not JSON (or nested too deep)")
        req = body.get("request") if isinstance(body, dict) else None
        if not isinstance(req, dict) or body.get("kind") != "AdmissionReview":
            return json_error(400, "not an admission.k8s.io/v1 AdmissionReview")
        uid = req.get("uid")
        if not isinstance(uid, str) or not uid:
            return json_error(400, "the AdmissionReview has no request.uid")
        cluster = core.settings.admission.cluster
        workload = Workload.from_admission_review(body, cluster=cluster)
        if workload is None or req.get("operation") == "DELETE":
            return web.json_response(response(uid, Verdict(True)))
        verdict = await core.admission.review(workload, core.clock.now())
        # The API server waits on this answer; the findings' trip to Slack need not make it
        # wait for a commit (the watcher and the next admission see the workload again).
        task = asyncio.create_task(queue(seen_event(workload, req["object"])))
        pending.add(task)
        task.add_done_callback(pending.discard)
        return web.json_response(response(uid, verdict))

    async def queue(event: WorkloadSeen) -> None:
        try:
            await core.intake.accept(SOURCE, [event])
        except IntakeUnavailable:
            log.warning("admission: findings of %s/%s not queued", event.namespace, event.name)

    app.router.add_post("/hooks/k8s/admission", review)
