"""POST /hooks/k8s/admission: AdmissionReview in, same uid out; audit warns, enforce denies."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import handlers
from bot.app import build, web_app
from bot.cluster.policy import RULES
from bot.store import inbox, outbox
from bot.store.models import Suppression, TrackedFinding
from tests.conftest import ADMISSION_AUTH, make_settings, slack_section
from tests.support.slack_standin import SlackStandIn

REVIEW = json.loads(
    (Path(__file__).parent / "fixtures/kubernetes/kube-review-deployment-create.json").read_text()
)


def privileged_review(uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002") -> dict[str, Any]:
    review = copy.deepcopy(REVIEW)
    review["request"]["uid"] = uid
    review["request"]["namespace"] = "payments"
    template = review["request"]["object"]["spec"]["template"]["spec"]
    template["containers"][0]["securityContext"] = {"privileged": True}
    return review


@pytest.fixture
async def webhook(aiohttp_client: Callable[..., Any], sqlite_url: str) -> AsyncIterator[Any]:
    slack = SlackStandIn(epoch=time.time())
    await slack.start()

    async def start(mode: str, **sections: Any) -> Any:
        settings = make_settings(
            sqlite_url,
            slack=slack_section(slack),
            admission={"mode": mode, "cluster": "prod"},
            teams=[{"name": "payments", "channel": "#payments", "namespaces": ["payments"]}],
            registries=[{"name": "local", "kind": "distribution", "url": "http://127.0.0.1:9"}],
            **sections,
        )
        runtime = build(settings, handlers.EDGES)
        client = await aiohttp_client(web_app(runtime))
        client.runtime, client.slack = runtime, slack
        return client

    yield start
    await slack.stop()


async def _review(client: Any, review: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post("/hooks/k8s/admission", json=review, headers=ADMISSION_AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    assert body["response"]["uid"] == review["request"]["uid"]
    return dict(body["response"])


async def test_audit_allows_warns_and_posts_findings_to_the_team(webhook: Any) -> None:
    client = await webhook("audit")
    answer = await _review(client, privileged_review())
    assert answer["allowed"] is True
    assert any("pss-baseline/privileged" in w for w in answer["warnings"])
    [post] = await client.slack.wait_for("chat.postMessage", 1, timeout=10)
    assert post.args["channel"] == "#payments"
    shown = json.dumps(post.args["blocks"])
    assert "pss-baseline/privileged" in shown and "finding.approve" in shown


async def test_enforce_denies_with_each_violation_and_its_fix(webhook: Any) -> None:
    client = await webhook("enforce")
    answer = await _review(client, privileged_review())
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 403
    message = answer["status"]["message"]
    assert "privileged" in message and "securityContext" in message


async def test_enforce_allows_what_an_approve_decision_covers(webhook: Any) -> None:
    client = await webhook("enforce")
    first = await _review(client, privileged_review())
    assert first["allowed"] is False
    now = datetime.now(UTC)
    async with client.runtime.core.db.transaction() as s:
        for check in RULES:
            s.add(
                Suppression(
                    kind="approve",
                    scope="repository",
                    team="payments",
                    registry_name="k8s:prod",
                    repository="payments/deployment/nginx",
                    check_id=check,
                    package=None,
                    reason="vendor agent needs it",
                    decided_by="UAPPROVER1",
                    created_at=now,
                )
            )
    again = await _review(client, privileged_review("second-uid"))
    assert again["allowed"] is True, again


async def test_enforce_denies_an_image_with_an_unapproved_critical_fixable_finding(
    webhook: Any,
) -> None:
    # Privileged, so that the workload policy lets the pod through and the finding is why not.
    client = await webhook("enforce", policy={"default_level": "privileged"})
    review = copy.deepcopy(REVIEW)
    review["request"]["uid"] = "vuln-uid"
    spec = review["request"]["object"]["spec"]["template"]["spec"]
    spec["containers"][0]["image"] = "127.0.0.1:9/payments/api@sha256:" + "a" * 64
    now = datetime.now(UTC)
    async with client.runtime.core.db.transaction() as s:
        s.add(
            TrackedFinding(
                registry_name="local",
                repository="payments/api",
                check_id="CVE-2024-0001",
                package="openssl 3.0.1",
                severity="critical",
                title="bad",
                detail="",
                remediation="",
                fixed_version="3.0.2",
                status="open",
                first_seen_at=now,
                last_seen_at=now,
                last_seen_digest="sha256:" + "a" * 64,
            )
        )
    assert client.runtime.core.settings.policy.default_level == "privileged"
    answer = await _review(client, review)
    assert answer["allowed"] is False
    assert "CVE-2024-0001" in answer["status"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b'{"kind": "AdmissionReview"}',
        b'{"kind": "AdmissionReview", "request": {"uid": 5}}',
    ],
)
async def test_malformed_reviews_get_400(webhook: Any, body: bytes) -> None:
    client = await webhook("audit")
    resp = await client.post(
        "/hooks/k8s/admission",
        data=body,
        headers={"Content-Type": "application/json", **ADMISSION_AUTH},
    )
    assert resp.status == 400 and "error" in await resp.json()


async def test_same_spec_admitted_twice_is_one_message(webhook: Any) -> None:
    client = await webhook("audit")
    await _review(client, privileged_review("a"))
    await _review(client, privileged_review("b"))
    await client.slack.wait_for("chat.postMessage", 1, timeout=10)
    for _ in range(100):
        async with client.runtime.core.db.transaction() as s:
            counts = await inbox.counts(s)
            if set(counts) == {"done"} and not await outbox.pending_count(s):
                break
        await asyncio.sleep(0.05)
    assert len(client.slack.calls_to("chat.postMessage")) == 1


# --------------------------------------------------------------------------- kubectl debug


def debug_review(uid: str, debug_container: dict[str, Any] | None) -> dict[str, Any]:
    """The review `kubectl debug -it web-… --image=busybox` makes the API server send (1.23+):
    an UPDATE of the `pods/ephemeralcontainers` subresource whose object is the whole Pod."""
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-7d9f8b6c5d-x2x9z",
            "namespace": "payments",
            "uid": "0b9c1e55-8f6b-4d4e-9d7a-2b1f0c1d2e3f",
            "labels": {"app": "web"},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "web",
                    "image": "registry.example.com/payments/web:1.4.2",
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"cpu": "1", "memory": "256Mi"},
                    },
                }
            ],
        },
    }
    old = copy.deepcopy(pod)
    if debug_container is not None:
        pod["spec"]["ephemeralContainers"] = [debug_container]
    pod_kind = {"group": "", "version": "v1", "kind": "Pod"}
    resource = {"group": "", "version": "v1", "resource": "pods"}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": pod_kind,
            "resource": resource,
            "subResource": "ephemeralcontainers",
            "requestKind": pod_kind,
            "requestResource": resource,
            "requestSubResource": "ephemeralcontainers",
            "name": "web-7d9f8b6c5d-x2x9z",
            "namespace": "payments",
            "operation": "UPDATE",
            "userInfo": {"username": "dev@example.com"},
            "object": pod,
            "oldObject": old,
            "dryRun": False,
            "options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


PRIVILEGED_DEBUGGER = {
    "name": "debugger-8xk2p",
    "image": "busybox:1.36",
    "targetContainerName": "web",
    "stdin": True,
    "tty": True,
    "securityContext": {"privileged": True},
}


async def test_enforce_denies_a_privileged_kubectl_debug_container(webhook: Any) -> None:
    client = await webhook("enforce")
    plain = {k: v for k, v in PRIVILEGED_DEBUGGER.items() if k != "securityContext"}
    assert (await _review(client, debug_review("plain-debug", plain)))["allowed"] is True
    answer = await _review(client, debug_review("privileged-debug", PRIVILEGED_DEBUGGER))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 403
    assert "debugger-8xk2p" in answer["status"]["message"]
    assert "privileged" in answer["status"]["message"]


async def test_audit_allows_a_privileged_kubectl_debug_container_and_posts_it(
    webhook: Any,
) -> None:
    client = await webhook("audit")
    answer = await _review(client, debug_review("privileged-debug", PRIVILEGED_DEBUGGER))
    assert answer["allowed"] is True
    assert any("pss-baseline/privileged" in w for w in answer["warnings"])
    [post] = await client.slack.wait_for("chat.postMessage", 1, timeout=10)
    assert post.args["channel"] == "#payments"
    shown = json.dumps(post.args["blocks"])
    assert "pss-baseline/privileged" in shown and "web-7d9f8b6c5d-x2x9z" in shown


# --------------------------------------------------------------------------- clean refusals


@pytest.mark.parametrize(("mode", "allowed"), [("audit", True), ("enforce", False)])
async def test_other_admission_api_versions_are_refused_as_the_mode_says(
    webhook: Any, mode: str, allowed: bool
) -> None:
    client = await webhook(mode)
    review = privileged_review("old-api")
    review["apiVersion"] = "admission.k8s.io/v1beta1"
    answer = await _review(client, review)
    assert answer["allowed"] is allowed
    assert answer["status"]["code"] == 400
    assert "only AdmissionReview admission.k8s.io/v1" in answer["status"]["message"]
    assert "v1beta1" in answer["status"]["message"]


def _long_name(review: dict[str, Any], where: str) -> dict[str, Any]:
    request = review["request"]
    if where == "object.metadata.name":
        request["object"]["metadata"]["name"] = "a" * 254
    elif where == "request.name":
        request["name"] = "a" * 254
        del request["object"]["metadata"]["name"]
    elif where == "request.namespace":
        request["namespace"] = "n" * 64
    else:
        request.pop("namespace", None)
        request["object"]["metadata"]["namespace"] = "n" * 300
    return review


@pytest.mark.parametrize(
    "where",
    ["object.metadata.name", "request.name", "request.namespace", "object.metadata.namespace"],
)
@pytest.mark.parametrize(("mode", "allowed"), [("audit", True), ("enforce", False)])
async def test_names_longer_than_kubernetes_allows_get_a_review_answer_not_a_500(
    webhook: Any, where: str, mode: str, allowed: bool
) -> None:
    client = await webhook(mode)
    answer = await _review(client, _long_name(privileged_review("long"), where))
    assert answer["allowed"] is allowed
    assert answer["status"]["code"] == 400
    assert "could not review" in answer["status"]["message"]
    if allowed:
        assert any("could not review" in w for w in answer["warnings"])


@pytest.mark.parametrize(
    "uid", [pytest.param("u" * 129, id="uid-too-long"), pytest.param("", id="uid-empty")]
)
async def test_a_review_without_a_usable_uid_is_a_400_json_error(webhook: Any, uid: str) -> None:
    client = await webhook("enforce")
    resp = await client.post(
        "/hooks/k8s/admission", json=privileged_review(uid), headers=ADMISSION_AUTH
    )
    assert resp.status == 400 and "request.uid" in (await resp.json())["error"]


ODD = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["a" * 254, "b" * 64, "x" * 5000, "payments", "", "Pod", "v1"])
)
ODD_TREE = st.recursive(
    ODD,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` seven times in eight: enough well-formed reviews reach the policy and the inbox."""
    return st.integers(0, 7).flatmap(lambda n: odd if n == 5 else usual)


NAME = mostly(st.sampled_from(["web", "a" * 253, "a" * 254, "b" * 5000]), ODD)
NAMESPACE = mostly(st.sampled_from(["payments", "n" * 63, "n" * 64, "team-a"]), ODD)
CONTAINER = st.fixed_dictionaries(
    {},
    optional={
        "name": NAME,
        "image": mostly(st.sampled_from(["busybox", "127.0.0.1:9/team-a/app:1.0"]), ODD),
        "securityContext": st.fixed_dictionaries(
            {}, optional={"privileged": ODD, "runAsUser": ODD, "capabilities": ODD_TREE}
        )
        | ODD,
        "resources": ODD_TREE,
        "ports": ODD_TREE,
    },
)
CONTAINERS = mostly(st.lists(CONTAINER, min_size=1, max_size=2), ODD)
POD_SPEC = st.fixed_dictionaries(
    {"containers": CONTAINERS},
    optional={
        "initContainers": CONTAINERS,
        "ephemeralContainers": CONTAINERS,
        "hostNetwork": ODD,
        "volumes": ODD_TREE,
        "securityContext": ODD_TREE,
    },
)
METADATA = st.fixed_dictionaries(
    {"name": NAME},
    optional={"namespace": NAMESPACE, "labels": ODD_TREE, "annotations": ODD_TREE},
)


@st.composite
def workload_object(draw: st.DrawFn) -> Any:
    kind = draw(mostly(st.sampled_from(["Pod", "Deployment", "CronJob", "Job", "DaemonSet"]), ODD))
    spec: Any = draw(POD_SPEC)
    if kind == "CronJob":
        spec = {"jobTemplate": {"spec": {"template": {"metadata": draw(METADATA), "spec": spec}}}}
    elif kind != "Pod":
        spec = {"template": {"metadata": draw(METADATA), "spec": spec}}
    return {"kind": kind, "apiVersion": draw(ODD), "metadata": draw(METADATA), "spec": spec}


@st.composite
def review_with_a_uid(draw: st.DrawFn) -> dict[str, Any]:
    request = draw(
        st.fixed_dictionaries(
            {"uid": st.text(min_size=1, max_size=40)},
            optional={
                "kind": st.fixed_dictionaries({"kind": ODD}) | ODD,
                "name": NAME,
                "namespace": NAMESPACE,
                "operation": mostly(st.sampled_from(["CREATE", "UPDATE"]), ODD | st.just("DELETE")),
                "subResource": st.sampled_from(["ephemeralcontainers"]) | ODD,
                "object": mostly(workload_object(), ODD_TREE),
            },
        )
    )
    review: dict[str, Any] = {"request": request}
    review["kind"] = draw(mostly(st.just("AdmissionReview"), ODD))
    review["apiVersion"] = draw(
        mostly(st.just("admission.k8s.io/v1"), ODD | st.just("admission.k8s.io/v1beta1"))
    )
    return review


REFUSAL_PROPERTY = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
async def enforcing(webhook: Any) -> Any:
    return await webhook("enforce")


@REFUSAL_PROPERTY
@given(review=review_with_a_uid())
async def test_any_review_with_a_uid_gets_a_well_formed_admission_review(
    enforcing: Any, review: dict[str, Any]
) -> None:
    resp = await enforcing.post("/hooks/k8s/admission", json=review, headers=ADMISSION_AUTH)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    answer = body["response"]
    assert answer["uid"] == review["request"]["uid"]
    assert isinstance(answer["allowed"], bool)
    if not answer["allowed"]:
        assert isinstance(answer["status"]["code"], int)
        assert isinstance(answer["status"]["message"], str) and answer["status"]["message"]


@REFUSAL_PROPERTY
@given(body=st.binary(max_size=200) | ODD_TREE.map(lambda v: json.dumps(v).encode()))
async def test_any_body_gets_an_admission_review_or_a_400_json_error_never_a_500(
    enforcing: Any, body: bytes
) -> None:
    resp = await enforcing.post(
        "/hooks/k8s/admission",
        data=body,
        headers={"Content-Type": "application/json", **ADMISSION_AUTH},
    )
    assert resp.status in (200, 400), await resp.text()
    answer = await resp.json()
    if resp.status == 400:
        assert isinstance(answer["error"], str)
    else:
        assert answer["kind"] == "AdmissionReview" and "uid" in answer["response"]
