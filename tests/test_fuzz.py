"""Property-based fuzzing of every parser of outside input, and of every endpoint through the app.

Parsers: arbitrary bytes, arbitrary JSON values, and the real captured samples with one value
(anywhere in the document) replaced by an arbitrary JSON value must never raise anything but the
parser's documented error. Endpoints: random bodies (authenticated where the endpoint needs it,
so they reach the parsers) must never be answered with a 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import select

from bot.cluster.policy import Exemption, PolicyConfig, Workload, evaluate
from bot.model.events import ImageDeleted, ImagePushed, RuntimeAlert, ScanCompleted
from bot.model.findings import Finding
from bot.store.models import DecisionRow, TrackedFinding
from bot.vulns import osv, reports
from handlers import falco
from handlers.registry import (
    artifact_registry,
    distribution,
    dockerhub,
    ecr,
    ghcr,
    harbor,
    quay,
)
from handlers.registry.errors import MalformedPayload, Unsupported
from tests.conftest import (
    ADMISSION_AUTH,
    FALCO_AUTH,
    SIGNING_SECRET,
    make_settings,
    slack_section,
)
from tests.support.json_paths import paths, replace
from tests.support.seed import seed_push
from tests.support.slack_standin import APP_ID, TEAM_ID, SlackStandIn, block_actions_body

FIXTURES = Path(__file__).parent / "fixtures"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
#: The endpoints run on one app per test, so fewer examples keep the file inside its budget.
FUZZ_HTTP = settings(FUZZ, max_examples=100)

MODULES: dict[str, Any] = {
    "distribution": distribution,
    "dockerhub": dockerhub,
    "ghcr": ghcr,
    "harbor": harbor,
    "quay": quay,
    "ecr": ecr,
    "artifact-registry": artifact_registry,
}
KINDS = sorted(MODULES)
SECRET = "fuzz-webhook-secret"
D64 = "sha256:" + "ab" * 32

# --------------------------------------------------------------------------- strategies

_WORDS = [
    # registry payloads
    "events", "id", "action", "push", "delete", "pull", "target", "mediaType", "digest",
    "repository", "tag", "actor", "name", "timestamp", "type", "occur_at", "operator",
    "event_data", "resources", "repo_full_name", "push_data", "pushed_at", "pusher", "repo_name",
    "package", "registry_package", "package_version", "version", "owner", "login", "ecosystem",
    "package_type", "container_metadata", "package_url", "updated_tags", "detail-type", "source",
    "detail", "result", "repository-name", "image-digest", "action-type", "image-tag", "message",
    "data", "messageId", "publishTime", "PUSH_ARTIFACT", "ECR Image Action", "INSERT",
    "SUCCESS", "aws.ecr", "published", "CONTAINER", "docker", "build_id", "message_id",
    "mount", "updated", "PULL_ARTIFACT", "SCANNING_COMPLETED", "ECR Image Scan", "UPDATE",
    # falco
    "rule", "priority", "output", "time", "hostname", "tags", "uuid", "output_fields",
    "k8s.pod.name", "k8s.ns.name", "k8s.pod.labels", "container.image.repository",
    "container.image.tag",
    # kubernetes
    "kind", "apiVersion", "metadata", "namespace", "labels", "annotations", "spec", "template",
    "jobTemplate", "containers", "initContainers", "ephemeralContainers", "image",
    "securityContext", "privileged", "runAsUser", "runAsNonRoot", "capabilities", "add", "drop",
    "hostNetwork", "hostPID", "hostIPC", "volumes", "hostPath", "path", "ports", "hostPort",
    "seccompProfile", "seLinuxOptions", "appArmorProfile", "sysctls", "os", "windowsOptions",
    "hostProcess", "resources", "limits", "allowPrivilegeEscalation", "procMount",
    "readOnlyRootFilesystem", "automountServiceAccountToken", "livenessProbe", "httpGet",
    "host", "Pod", "Deployment", "CronJob", "request", "object", "uid", "operation",
    # osv and scanner reports
    "modified", "published", "withdrawn", "aliases", "related", "summary", "details",
    "severity", "affected", "ranges", "events", "introduced", "fixed", "versions", "score",
    "SchemaVersion", "Results", "Vulnerabilities", "VulnerabilityID", "PkgName",
    "InstalledVersion", "FixedVersion", "Severity", "matches", "vulnerability", "artifact",
    "relatedVulnerabilities", "matchDetails", "fix", "suggestedVersion", "vulnerabilities",
    "fix_version", "scanner", "generated_at",
]  # fmt: skip
KEYS = st.sampled_from(_WORDS) | st.text(max_size=10)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(_WORDS)
    | st.sampled_from([D64, "sha256:", "team-a/app", "2024-01-01T00:00:00Z", "0", "-1", ""])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=30,
)


def _dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _samples(directory: Path) -> list[tuple[Path, Any]]:
    return [
        (p, json.loads(p.read_bytes()))
        for p in sorted(directory.glob("*.json"))
        if not p.name.endswith(".headers.json")
    ]


def mutated(documents: list[tuple[Path, Any]]) -> st.SearchStrategy[tuple[Path, Any]]:
    """A real sample with the value at one of its paths (the root included) replaced."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[Path, Any]:
        path, document = draw(st.sampled_from(documents))
        where = draw(st.sampled_from(paths(document)))
        return path, replace(document, where, draw(JSON))

    return build()


# --------------------------------------------------------------------------- registry parsers
# The one set of properties over every registry provider's parser (the HANDLED and IGNORED
# tables themselves are tested in test_registry_sources.py).


def _ghcr_headers(text: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "X-GitHub-Event": st.sampled_from(["package", "registry_package", "ping", "push", ""])
            | text,
            "X-GitHub-Delivery": text,
        },
    )


GHCR_HEADERS = _ghcr_headers(st.text(max_size=40))
#: What can travel in an HTTP header: visible ASCII (and spaces).
HTTP_GHCR_HEADERS = _ghcr_headers(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
)


def _registry_outcome(kind: str, headers: dict[str, str], body: bytes) -> None:
    """Image events, or a MalformedPayload (an Unsupported type among them): nothing else."""
    try:
        parsed = MODULES[kind].parse(headers, body, "reg")
    except Unsupported as exc:
        assert exc.events >= 1
        return
    except MalformedPayload:
        return
    assert parsed.ignored >= 0 and parsed.unsupported >= 0
    for event in parsed.events:
        assert isinstance(event, ImagePushed | ImageDeleted | ScanCompleted)


def _pubsub(data: bytes) -> bytes:
    message = {"data": base64.b64encode(data).decode(), "messageId": "m-1"}
    return json.dumps({"message": message, "subscription": "projects/p/subscriptions/s"}).encode()


def _registry_documents(kind: str) -> list[tuple[Path, Any]]:
    return _samples(FIXTURES / "registry" / kind)


def _headers_for(path: Path) -> dict[str, str]:
    file = path.with_name(path.name.replace(".json", ".headers.json"))
    return json.loads(file.read_text()) if file.exists() else {}


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(body=st.binary(max_size=400), headers=GHCR_HEADERS)
def test_registry_parsers_survive_arbitrary_bytes(
    kind: str, body: bytes, headers: dict[str, str]
) -> None:
    _registry_outcome(kind, headers, body)


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(value=JSON, headers=GHCR_HEADERS, wrapped=st.booleans())
def test_registry_parsers_survive_arbitrary_json(
    kind: str, value: Any, headers: dict[str, str], wrapped: bool
) -> None:
    body = _dump(value)
    if wrapped and kind == "artifact-registry":
        body = _pubsub(body)
    _registry_outcome(kind, headers, body)


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(data=st.data())
def test_registry_parsers_survive_real_samples_with_one_value_replaced(
    kind: str, data: st.DataObject
) -> None:
    path, document = data.draw(mutated(_registry_documents(kind)))
    body = _dump(document)
    if kind == "artifact-registry" and path.name.startswith("message-data__"):
        body = _pubsub(body)
    _registry_outcome(kind, _headers_for(path), body)


# --------------------------------------------------------------------------- Falco


def _falco_outcome(body: bytes) -> None:
    try:
        alert = falco.parse({}, body)
    except falco.MalformedPayload:
        return
    assert isinstance(alert, RuntimeAlert)


@FUZZ
@given(body=st.binary(max_size=400))
def test_falco_parser_survives_arbitrary_bytes(body: bytes) -> None:
    _falco_outcome(body)


@FUZZ
@given(value=JSON)
def test_falco_parser_survives_arbitrary_json(value: Any) -> None:
    _falco_outcome(_dump(value))


@FUZZ
@given(
    fields=st.dictionaries(KEYS, JSON, max_size=6),
    rule=st.text(max_size=5) | st.just("Terminal shell in container"),
)
def test_falco_parser_survives_arbitrary_output_fields(fields: dict[str, Any], rule: str) -> None:
    body = {"rule": rule, "priority": "Warning", "time": "2024-01-01T00:00:00Z"}
    _falco_outcome(_dump({**body, "output_fields": fields}))


@FUZZ
@given(sample=mutated(_samples(FIXTURES / "falco")))
def test_falco_parser_survives_real_samples_with_one_value_replaced(
    sample: tuple[Path, Any],
) -> None:
    _falco_outcome(_dump(sample[1]))


# --------------------------------------------------------------------------- policy

POLICIES = [
    PolicyConfig(),
    PolicyConfig(
        default_level="restricted",
        allowed_registries=("ghcr.io/acme", "*.example.com"),
        require_digest=True,
        require_read_only_root=True,
    ),
    PolicyConfig(
        default_level="privileged",
        namespace_levels={"kube-*": "restricted", "prod": "baseline"},
        exemptions=[Exemption(namespaces=("kube-*",), rules=("pss-baseline/*",))],
    ),
]
CONTAINER = st.fixed_dictionaries(
    {},
    optional={
        "name": JSON,
        "image": JSON | st.sampled_from(["nginx", "ghcr.io/acme/x:1", f"r.example.com/a@{D64}"]),
        "securityContext": JSON,
        "resources": JSON,
        "ports": JSON,
        "livenessProbe": JSON,
    },
)
POD_SPEC = st.fixed_dictionaries(
    {},
    optional={
        "containers": st.lists(CONTAINER | JSON, max_size=3) | JSON,
        "initContainers": st.lists(CONTAINER, max_size=2) | JSON,
        "ephemeralContainers": JSON,
        "securityContext": JSON,
        "volumes": JSON,
        "hostNetwork": JSON,
        "os": JSON,
        "automountServiceAccountToken": JSON,
    },
)
META = st.fixed_dictionaries(
    {}, optional={"name": JSON, "namespace": JSON, "labels": JSON, "annotations": JSON}
)


@st.composite
def k8s_object(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["Pod", "Deployment", "CronJob", "Job", "Service"]) | JSON)
    spec = draw(POD_SPEC)
    if kind == "CronJob":
        spec = {"jobTemplate": {"spec": {"template": {"metadata": draw(META), "spec": spec}}}}
    elif kind not in ("Pod",):
        spec = {"template": {"metadata": draw(META), "spec": spec}}
    return {"kind": kind, "metadata": draw(META), "spec": spec}


@st.composite
def admission_review(draw: st.DrawFn) -> Any:
    request = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "uid": JSON,
                "kind": JSON,
                "namespace": JSON,
                "name": JSON,
                "operation": st.sampled_from(["CREATE", "UPDATE", "DELETE"]) | JSON,
            },
        )
    )
    request["object"] = draw(k8s_object() | JSON)
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request}


def _policy_outcome(review: Any) -> None:
    workload = Workload.from_admission_review(review, cluster="fuzz")
    if workload is None:
        return
    for config in POLICIES:
        findings = evaluate(workload, config)
        assert all(isinstance(f, Finding) for f in findings)


@FUZZ
@given(review=JSON)
def test_policy_survives_arbitrary_json(review: Any) -> None:
    _policy_outcome(review)


@FUZZ
@given(review=admission_review())
def test_policy_survives_arbitrary_workloads(review: Any) -> None:
    _policy_outcome(review)


@FUZZ
@given(sample=mutated(_samples(FIXTURES / "kubernetes")))
def test_policy_survives_real_reviews_with_one_value_replaced(sample: tuple[Path, Any]) -> None:
    _policy_outcome(sample[1])


# --------------------------------------------------------------------------- OSV


def _osv_outcome(data: str | bytes | dict[str, Any]) -> None:
    try:
        record = osv.parse_record(data)
    except (ValueError, ValidationError):  # documented: bad JSON, or not an OSV record
        return
    assert isinstance(record, osv.OsvRecord)
    json.loads(record.raw_json())


@FUZZ
@given(body=st.binary(max_size=400))
def test_osv_parser_survives_arbitrary_bytes(body: bytes) -> None:
    _osv_outcome(body)


@FUZZ
@given(value=JSON, as_text=st.booleans())
def test_osv_parser_survives_arbitrary_json(value: Any, as_text: bool) -> None:
    _osv_outcome(json.dumps(value) if as_text or not isinstance(value, dict) else value)


@FUZZ
@given(sample=mutated(_samples(FIXTURES / "osv")), as_text=st.booleans())
def test_osv_parser_survives_real_records_with_one_value_replaced(
    sample: tuple[Path, Any], as_text: bool
) -> None:
    document = sample[1]
    _osv_outcome(json.dumps(document) if as_text or not isinstance(document, dict) else document)


# --------------------------------------------------------------------------- scanner reports


def _report_outcome(data: bytes | str) -> None:
    try:
        found = reports.detect_and_parse(data)
    except reports.ReportError:
        return
    assert all(isinstance(f, reports.ReportFinding) for f in found)


@FUZZ
@given(body=st.binary(max_size=400))
def test_report_parser_survives_arbitrary_bytes(body: bytes) -> None:
    _report_outcome(body)


@FUZZ
@given(value=JSON)
def test_report_parser_survives_arbitrary_json(value: Any) -> None:
    _report_outcome(json.dumps(value))


@FUZZ
@given(sample=mutated(_samples(FIXTURES / "reports")))
def test_report_parser_survives_real_reports_with_one_value_replaced(
    sample: tuple[Path, Any],
) -> None:
    _report_outcome(json.dumps(sample[1]))


# --------------------------------------------------------------------------- through the app


def _registry_config(kind: str) -> dict[str, Any]:
    return {
        "name": kind,
        "kind": kind,
        "url": "http://127.0.0.1:9",
        "webhook_secret": SECRET,
        "timeout": 1,
    }


@pytest.fixture
async def app(app_client: Any, sqlite_url: str, slack: SlackStandIn) -> Any:
    settings = make_settings(
        sqlite_url,
        slack=slack_section(slack),
        registries=[_registry_config(kind) for kind in [*KINDS, "gitlab"]],
        teams=[{"name": "team-a", "channel": "#team-a", "repositories": ["team-a/*"]}],
        worker={"concurrency": 0},
    )
    client, _runtime = await app_client(settings)
    return client


def _credentials(kind: str, body: bytes) -> tuple[dict[str, str], dict[str, str]]:
    """Headers and query that authenticate `body` as this registry kind does."""
    if kind in ("distribution", "gitlab", "ecr"):
        return {"Authorization": f"Bearer {SECRET}"}, {}
    if kind == "harbor":
        return {"Authorization": SECRET}, {}
    if kind == "ghcr":
        mac = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return {"X-Hub-Signature-256": f"sha256={mac}"}, {}
    return {}, {"token": SECRET}


def _http_body(kind: str) -> st.SearchStrategy[bytes]:
    documents = _registry_documents("distribution" if kind == "gitlab" else kind)
    return (
        st.binary(max_size=300)
        | JSON.map(_dump)
        | mutated(documents).map(lambda sample: _dump(sample[1]))
    )


def _assert_not_500(status: int, text: str, what: str) -> None:
    assert status != 500, f"{what}: 500 {text[:300]}"


@pytest.mark.parametrize("kind", [*KINDS, "gitlab"])
@FUZZ_HTTP
@given(data=st.data())
async def test_registry_endpoints_never_answer_500(
    app: Any, kind: str, data: st.DataObject
) -> None:
    body = data.draw(_http_body(kind))
    headers, query = _credentials(kind, body)
    if data.draw(st.booleans()):
        headers |= data.draw(HTTP_GHCR_HEADERS)
    content_type = data.draw(
        st.sampled_from(
            ["application/json", "", "application/vnd.docker.distribution.events.v1+json"]
        )
    )
    resp = await app.post(
        f"/hooks/registry/{kind}",
        data=body,
        params=query,
        headers={**headers, "Content-Type": content_type} if content_type else headers,
    )
    _assert_not_500(resp.status, await resp.text(), f"{kind} {body[:200]!r}")


@FUZZ_HTTP
@given(
    body=st.binary(max_size=300)
    | JSON.map(_dump)
    | mutated(_samples(FIXTURES / "falco")).map(lambda s: _dump(s[1]))
)
async def test_falco_endpoint_never_answers_500(app: Any, body: bytes) -> None:
    resp = await app.post(
        "/hooks/falco", data=body, headers={**FALCO_AUTH, "Content-Type": "application/json"}
    )
    _assert_not_500(resp.status, await resp.text(), f"falco {body[:200]!r}")


@FUZZ_HTTP
@given(
    body=st.binary(max_size=300)
    | JSON.map(_dump)
    | admission_review().map(_dump)
    | mutated(_samples(FIXTURES / "kubernetes")).map(lambda s: _dump(s[1]))
)
async def test_admission_endpoint_never_answers_500(app: Any, body: bytes) -> None:
    resp = await app.post(
        "/hooks/k8s/admission",
        data=body,
        headers={**ADMISSION_AUTH, "Content-Type": "application/json"},
    )
    _assert_not_500(resp.status, await resp.text(), f"admission {body[:200]!r}")


# --------------------------------------------------------------------------- Slack

USERS = st.sampled_from(["UAPPROVER1", "UOTHER1", ""]) | st.text(max_size=8)
ACTION_IDS = st.sampled_from(
    ["finding.approve", "finding.patch", "finding.ignore", "alert.ack", "findings.show_all"]
)
#: Button values and modal metadata point at rows: mostly at the seeded findings 1 and 2.
NUMBERISH = (
    st.sampled_from(["1", "2", "3", "0", "-1", str(2**63), "1e3", " 2 "])
    | st.integers(min_value=-5, max_value=2**64).map(str)
    | st.text(max_size=8)
)
TEXT = st.text(max_size=30)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy | JSON


# Shaped as Slack shapes them (objects where Slack sends objects), with arbitrary leaves.
ELEMENT = st.fixed_dictionaries(
    {"type": st.sampled_from(["plain_text_input", "static_select", "radio_buttons"])},
    optional={
        "value": st.none() | TEXT,
        "selected_option": st.none()
        | st.fixed_dictionaries({"value": st.sampled_from(["7", "30", "90", "fix"]) | TEXT}),
    },
)
STATE_VALUES = st.dictionaries(
    st.sampled_from(["reason", "expiry", "scope"]) | TEXT,
    st.dictionaries(st.just("value") | TEXT, ELEMENT, max_size=2),
    max_size=3,
)
PRIVATE_METADATA = (
    st.fixed_dictionaries({"finding": NUMBERISH | JSON}).map(json.dumps)
    | JSON.map(json.dumps)
    | TEXT
)
WELL_FORMED_ACTION = st.fixed_dictionaries(
    {
        "type": st.just("block_actions"),
        "user": st.fixed_dictionaries({"id": USERS}, optional={"username": TEXT}),
        "team": st.just({"id": TEAM_ID}),
        "api_app_id": st.just(APP_ID),
        "trigger_id": TEXT,
        "actions": st.lists(
            st.fixed_dictionaries(
                {"action_id": ACTION_IDS, "block_id": TEXT, "type": st.just("button")},
                optional={"value": NUMBERISH},
            ),
            min_size=1,
            max_size=2,
        ),
    },
    optional={
        "channel": st.fixed_dictionaries({"id": TEXT}),
        "container": st.fixed_dictionaries({"type": st.just("message"), "channel_id": TEXT}),
        "response_url": st.just("http://127.0.0.1:9/response"),
    },
)
WELL_FORMED_SUBMISSION = st.fixed_dictionaries(
    {
        "type": st.just("view_submission"),
        "user": st.fixed_dictionaries({"id": USERS}),
        "team": st.just({"id": TEAM_ID}),
        "api_app_id": st.just(APP_ID),
        "view": st.fixed_dictionaries(
            {
                "id": TEXT,
                "type": st.just("modal"),
                "callback_id": st.sampled_from(["decision.approve", "decision.ignore"]),
                "private_metadata": PRIVATE_METADATA,
                "state": st.fixed_dictionaries({"values": STATE_VALUES}),
            }
        ),
    },
)
SLASH = st.fixed_dictionaries(
    {
        "command": st.just("/crowsnest"),
        "text": st.tuples(
            st.sampled_from(["help", "status", "findings", "ignores", "digest", ""]) | TEXT,
            st.lists(st.sampled_from(["team-a", "team-a/app:1", "x@sha256:"]) | TEXT, max_size=3),
        ).map(lambda t: " ".join([t[0], *t[1]])),
        "user_id": USERS,
        "team_id": st.just(TEAM_ID),
        "channel_id": TEXT,
        "api_app_id": st.just(APP_ID),
        "trigger_id": TEXT,
    },
)
HOME_OPENED = st.fixed_dictionaries(
    {
        "type": st.just("event_callback"),
        "team_id": st.just(TEAM_ID),
        "api_app_id": st.just(APP_ID),
        "event": st.fixed_dictionaries(
            {"type": st.just("app_home_opened"), "user": USERS, "tab": st.just("home")}
        ),
    }
)
FORM = "application/x-www-form-urlencoded"


def _interactive(payload: dict[str, Any]) -> tuple[bytes, str]:
    return urlencode({"payload": json.dumps(payload)}).encode(), FORM


def well_formed_slack_requests() -> st.SearchStrategy[tuple[bytes, str]]:
    return (
        (WELL_FORMED_ACTION | WELL_FORMED_SUBMISSION).map(_interactive)
        | SLASH.map(lambda f: (urlencode(f).encode(), FORM))
        | HOME_OPENED.map(lambda e: (json.dumps(e).encode(), "application/json"))
    )


def arbitrary_slack_requests() -> st.SearchStrategy[tuple[bytes, str]]:
    payload = st.fixed_dictionaries(
        {"type": st.sampled_from(["block_actions", "view_submission", "shortcut"]) | TEXT},
        optional={
            "user": _maybe(st.fixed_dictionaries({"id": USERS})),
            "team": _maybe(st.just({"id": TEAM_ID})),
            "actions": _maybe(st.lists(JSON, max_size=2)),
            "view": JSON,
            "channel": JSON,
        },
    )
    return (
        payload.map(_interactive)
        | st.tuples(st.binary(max_size=200), st.sampled_from([FORM, "application/json"]))
        | st.tuples(JSON.map(_dump), st.just("application/json"))
    )


def signed(body: bytes, content_type: str) -> dict[str, str]:
    """Slack's v0 signature over any bytes (slack_sdk's signer insists on UTF-8 text)."""
    stamp = str(int(time.time()))
    base = b"v0:" + stamp.encode() + b":" + body
    mac = hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={mac}",
    }


@pytest.fixture
async def slack_app(app_client: Any, sqlite_url: str, slack: SlackStandIn) -> Any:
    """The app with two open findings (1: high, 2: medium) for the buttons to point at."""
    slack.register("views.publish", lambda args: {"ok": True, "view": args.get("view")})
    settings = make_settings(
        sqlite_url,
        slack=slack_section(slack),
        teams=[
            {
                "name": "team-a",
                "channel": "#team-a",
                "repositories": ["team-a/*"],
                "approvers": ["UAPPROVER1"],
            }
        ],
        worker={"concurrency": 0},
    )
    client, runtime = await app_client(settings)
    async with runtime.core.db.transaction() as s:
        ids = await seed_push(
            s,
            repository="team-a/app",
            team="team-a",
            findings=[("secret-in-config", "high"), ("runs-as-root", "medium")],
            at=datetime.now(UTC),
        )
    assert ids == [1, 2]
    return client


async def _post_slack(client: Any, body: bytes, content_type: str) -> None:
    resp = await client.post("/slack/events", data=body, headers=signed(body, content_type))
    _assert_not_500(resp.status, await resp.text(), f"slack {body[:300]!r}")


@FUZZ_HTTP
@given(request=well_formed_slack_requests())
async def test_slack_endpoint_never_answers_500_to_well_formed_signed_requests(
    slack_app: Any, request: tuple[bytes, str]
) -> None:
    await _post_slack(slack_app, *request)


@FUZZ_HTTP
@example(request=(b"null", "application/json"))
@example(request=_interactive({"type": "block_actions", "actions": [{}]}))  # found by a fuzz run
@example(request=_interactive({"type": "block_actions", "actions": [{"action_id": 7}]}))
@given(request=arbitrary_slack_requests())
async def test_slack_endpoint_never_answers_500_to_arbitrary_signed_requests(
    slack_app: Any, request: tuple[bytes, str]
) -> None:
    await _post_slack(slack_app, *request)


async def test_app_home_opened_survives_a_failing_views_publish(
    slack_app: Any, slack: SlackStandIn
) -> None:
    slack.register("views.publish", lambda args: {"ok": False, "error": "user_not_found"})
    event = {
        "type": "event_callback",
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "event": {"type": "app_home_opened", "user": "UGONE1", "tab": "home"},
    }
    await _post_slack(slack_app, json.dumps(event).encode(), "application/json")


# --------------------------------------------------------------------------- known parser bugs

DEEP_ARRAY = "[" * 10_000 + "]" * 10_000


def test_grype_report_with_a_number_as_fix_versions_is_a_report_error() -> None:
    doc = {
        "matches": [
            {
                "vulnerability": {"id": "CVE-2024-0001", "fix": {"versions": 5}},
                "artifact": {"name": "openssl", "version": "1.0"},
            }
        ],
        "source": {},
    }
    _report_outcome(json.dumps(doc))


def test_deeply_nested_report_is_a_report_error() -> None:
    _report_outcome(DEEP_ARRAY)


def test_deeply_nested_osv_record_is_a_value_error() -> None:
    _osv_outcome(DEEP_ARRAY)


def test_deeply_nested_registry_and_falco_payloads_are_malformed() -> None:
    for kind in KINDS:
        _registry_outcome(
            kind, {"X-GitHub-Event": "package", "X-GitHub-Delivery": "d"}, DEEP_ARRAY.encode()
        )
    _falco_outcome(DEEP_ARRAY.encode())


async def test_patch_on_a_workload_finding_is_recorded(
    app_client: Any, sqlite_url: str, slack: SlackStandIn
) -> None:
    settings = make_settings(
        sqlite_url,
        slack=slack_section(slack),
        teams=[
            {
                "name": "team-a",
                "channel": "#team-a",
                "namespaces": ["team-a"],
                "members": ["UOTHER1"],  # who may Patch
            }
        ],
    )
    client, runtime = await app_client(settings)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {
            "containers": [
                {"name": "web", "image": "nginx", "securityContext": {"privileged": True}}
            ]
        },
    }
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u-1", "namespace": "team-a", "operation": "CREATE", "object": pod},
    }
    resp = await client.post("/hooks/k8s/admission", json=review, headers=ADMISSION_AUTH)
    assert resp.status == 200
    await slack.wait_for("chat.postMessage", 1, timeout=5)
    async with runtime.core.db.transaction() as s:
        tracked = list((await s.execute(select(TrackedFinding))).scalars())
    assert tracked
    body = block_actions_body(
        action_id="finding.patch",
        value=str(tracked[0].id),
        user_id="UOTHER1",
        channel=slack.channel_id("#team-a"),
        message_ts="1.000001",
    )
    resp = await client.post("/slack/events", data=body, headers=signed(body, FORM))
    async with runtime.core.db.transaction() as s:
        actions = [d.action for d in (await s.execute(select(DecisionRow))).scalars()]
    assert resp.status == 200 and actions == ["patch"], (resp.status, actions)
