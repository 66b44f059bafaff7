"""Harbor, Docker Hub, GHCR, Quay, ECR and Artifact Registry webhooks parse to domain events;
every provider's HANDLED and IGNORED tables (Docker Distribution's too) hold what it says.

The fixtures under tests/fixtures/registry/<kind>/ are published samples copied byte for byte
(see /work/shared/fixtures/real/SOURCES.md), plus a few `__handmade-…` variants. What each must
yield is written out here, apart from the code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import pytest

from bot.config import Registry, RegistryKind
from bot.model.events import ImageDeleted, ImagePushed, ScanCompleted
from handlers.registry import artifact_registry, distribution, dockerhub, ecr, ghcr, harbor, quay
from handlers.registry.errors import MalformedPayload, Unauthorized, Unsupported

DIR = Path(__file__).parent / "fixtures" / "registry"
SECRET = "test-webhook-secret"
MODULES: dict[str, ModuleType] = {
    "harbor": harbor,
    "dockerhub": dockerhub,
    "ghcr": ghcr,
    "quay": quay,
    "ecr": ecr,
    "artifact-registry": artifact_registry,
}
KINDS = sorted(MODULES)


class E(NamedTuple):
    type: str
    repository: str
    digest: str | None
    tag: str | None
    actor: str | None
    delivery_id: str
    pushed_at: datetime | None


def pushed(
    repository: str,
    digest: str | None,
    tag: str | None,
    actor: str | None,
    delivery_id: str,
    pushed_at: datetime | None = None,
) -> E:
    return E("image.pushed", repository, digest, tag, actor, delivery_id, pushed_at)


def deleted(repository: str, digest: str | None, tag: str | None, delivery_id: str) -> E:
    return E("image.deleted", repository, digest, tag, None, delivery_id, None)


def scanned(repository: str, digest: str, tag: str | None, delivery_id: str) -> E:
    return E("scan.completed", repository, digest, tag, None, delivery_id, None)


DEBIAN = "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8"
ZULIP_PUSHED = "sha256:d72f37f783ed6a8d58ac70b4db052707d1ec9d4ea010ef5ccd84652faf9ed844"
ZULIP_DELETED = "sha256:59856107563b1e1b2e48c8635e5cb44fa9b194f6a425e0b668917602213bb5b4"
ALMALINUX = "sha256:1cd0c4854ecacf9deabe4e5b065d913da93a4e0f37ddfd601b70d5861c1514d9"
TEAM_A_APP = "sha256:580256275c46cd372d0189a94cce48be68d6c54d5d71bd5aee035c3574697acb"
HELLO_WORLD = "sha256:3da1996a8115d7616457760d9920b815241d0a03b34cf5f04e9a0e9d8de37498"
MY_APP = "sha256:d3d483f62211f792ceead1d9c59f5f563f0dce64a592d356a370d247a621dce0"
ECR_APP = "sha256:a09bd9b8061e982b6601bfc83f193f896b90960d5f329def825a2d116525dd68"
AR_HELLO = "sha256:2a24ed95cb9356855751c7b0d8105d47831966af771fb605bc51bddb27c0b5a7"
# sha256 of the Quay fixture files: Quay sends no id or time, so the body is the dedup key.
QUAY_DOC = "sha256:da97efbea7249e3c6e2a97f579970d0be39c5e574de3134fbde74b2060e15725"
QUAY_KEEL = "sha256:4bc0b3b88f0ea0480b13fe839973eb2563f2e0b1745ee7d09d7535ff4ade42d2"
QUAY_TWO = "sha256:4ad8b5191fbc9679adb2b3453980ef3f11168b2cd122ac0eb8aa7d13cc663d65"
AR_HELLO_WORLD = "my-project/my-repo/hello-world"

# fixture -> the events it must yield, in order.
HARBOR_SCANNED = "sha256:b50334049354ed01330403212605dce2f4676a4e787ed113506861d9cf3c5424"
CERN_SCANNED = "sha256:ae884a753406c59bc5d20bd30e380fcb1857703ea538abcfb795cf3a93aabfaa"
EXPECTED: dict[str, dict[str, list[E]]] = {
    "harbor": {
        "scanning_completed__zulip": [
            scanned(
                "test/alpine/helm",
                HARBOR_SCANNED,
                "3.8.1",
                f"SCANNING_COMPLETED test/alpine/helm {HARBOR_SCANNED} 3.8.1 1648715576",
            )
        ],
        "scanning_completed__cern-no-tag-no-occur_at": [
            scanned(
                "inveniosoftware/almalinux",
                CERN_SCANNED,
                None,
                f"SCANNING_COMPLETED inveniosoftware/almalinux {CERN_SCANNED} - -",
            )
        ],
        "push_artifact__doc": [
            pushed(
                "test-webhook/debian",
                DEBIAN,
                "latest",
                "admin",
                f"PUSH_ARTIFACT test-webhook/debian {DEBIAN} latest 1586922308",
                datetime(2020, 4, 15, 3, 45, 8, tzinfo=UTC),
            )
        ],
        "push_artifact__zulip": [
            pushed(
                "example/test",
                ZULIP_PUSHED,
                "latest",
                "admin",
                f"PUSH_ARTIFACT example/test {ZULIP_PUSHED} latest 1571334632",
                datetime(2019, 10, 17, 17, 50, 32, tzinfo=UTC),
            )
        ],
        # Pushed by digest: Harbor repeats the digest as the "tag", which is no tag.
        "push_artifact__cern-robot-tag-is-digest": [
            pushed(
                "inveniosoftware/almalinux",
                ALMALINUX,
                None,
                "robot-inveniosoftware+github-inveniosoftware",
                f"PUSH_ARTIFACT inveniosoftware/almalinux {ALMALINUX} - 1666800952",
                datetime(2022, 10, 26, 16, 15, 52, tzinfo=UTC),
            )
        ],
        "push_artifact__handmade-two-tags": [
            pushed(
                "team-a/app",
                TEAM_A_APP,
                tag,
                "ci-bot",
                f"PUSH_ARTIFACT team-a/app {TEAM_A_APP} {tag} 1700000000",
                datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
            )
            for tag in ("1.0", "latest")
        ],
        "delete_artifact__zulip": [
            deleted(
                "example/test",
                ZULIP_DELETED,
                "latest",
                f"DELETE_ARTIFACT example/test {ZULIP_DELETED} latest 1571334977",
            )
        ],
    },
    "dockerhub": {
        "push__doc": [
            pushed(
                "svendowideit/testhook",
                None,
                "latest",
                "trustedbuilder",
                "svendowideit/testhook latest 1417566161",
                datetime(2014, 12, 3, 0, 22, 41, tzinfo=UTC),
            )
        ],
        "push__goliatone": [
            pushed(
                "goliatone/hello-rabbit",
                None,
                "latest",
                "goliatone",
                "goliatone/hello-rabbit latest 1466026222",
                datetime(2016, 6, 15, 21, 30, 22, tzinfo=UTC),
            )
        ],
    },
    "ghcr": {
        # package_url ghcr.io/Codertocat/hello-world: — GHCR names are lower-case; empty tag.
        "package-published__octokit-docker": [
            pushed(
                "codertocat/hello-world",
                HELLO_WORLD,
                None,
                "Codertocat",
                "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            )
        ],
        "registry_package-published__octokit-docker": [
            pushed(
                "codertocat/hello-world",
                HELLO_WORLD,
                None,
                "github-actions[bot]",
                "8e5ad3a0-0c7a-11ef-9d5e-1a2b3c4d5e6f",
            )
        ],
        "registry_package-updated__handmade-container-tag": [
            pushed(
                "acme/my-app", MY_APP, "v1.2.3", "octocat", "0b5a1c9e-1d2e-4f3a-8b7c-6d5e4f3a2b1c"
            )
        ],
        # The same version as a `package` event.
        "package-updated__handmade-container-tag": [
            pushed(
                "acme/my-app", MY_APP, "v1.2.3", "octocat", "5f0c2a1e-7b3d-4c8e-9a6f-2e1d0c9b8a7f"
            )
        ],
    },
    "quay": {
        "repo_push__doc-tags-object": [
            pushed("mynamespace/repository", None, "latest", None, f"{QUAY_DOC} latest")
        ],
        "repo_push__keel-tags-list": [
            pushed("mynamespace/repository", None, "1.2.3", None, f"{QUAY_KEEL} 1.2.3")
        ],
        "repo_push__handmade-two-tags-list": [
            pushed("acme/app", None, "foo", None, f"{QUAY_TWO} foo"),
            pushed("acme/app", None, "latest", None, f"{QUAY_TWO} latest"),
        ],
    },
    "ecr": {
        # The documentation's digest is 60 hex digits: not a digest; resolved by tag.
        "image_action-push__doc-short-digest": [
            pushed(
                "my-repository-name",
                None,
                "latest",
                None,
                "13cde686-328b-6117-af20-0e5566167482",
                datetime(2019, 11, 16, 1, 54, 34, tzinfo=UTC),
            )
        ],
        "image_action-push__handmade-full-digest": [
            pushed(
                "team-a/app",
                ECR_APP,
                "v1",
                None,
                "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
                datetime(2024, 5, 2, 10, 0, 0, tzinfo=UTC),
            )
        ],
        "image_action-delete__doc-short-digest": [
            deleted("my-repository-name", None, "latest", "dd3b46cb-2c74-f49e-393b-28286b67279d")
        ],
        "image_action-delete__handmade-digest-only": [
            deleted("team-a/app", ECR_APP, None, "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e")
        ],
    },
    "artifact-registry": {
        # message-data__… files are the documented `message.data`; the test wraps them in a
        # Pub/Sub push envelope whose messageId is "pubsub-<fixture name>".
        "message-data__doc-insert-tag-truncated-digest": [
            pushed(
                AR_HELLO_WORLD,
                None,
                "1.1",
                None,
                "pubsub-message-data__doc-insert-tag-truncated-digest",
            )
        ],
        "message-data__doc-delete-tag": [
            deleted(AR_HELLO_WORLD, None, "1.1", "pubsub-message-data__doc-delete-tag")
        ],
        "envelope__handmade-insert-full-digest": [
            pushed(
                AR_HELLO_WORLD,
                AR_HELLO,
                "1.1",
                None,
                "2070443601311540",
                datetime(2024, 5, 2, 10, 0, 0, 123000, tzinfo=UTC),
            )
        ],
    },
}
# fixture -> the IGNORED entry it is (None: a handled event type that is not an image push).
IGNORED: dict[str, dict[str, str | None]] = {
    "harbor": {
        "scanning_failed__zulip": "SCANNING_FAILED",
    },
    "dockerhub": {},
    "ghcr": {"ping__handmade": "ping", "package-published__handmade-npm": None},
    "quay": {
        "build_success__handmade": "build_*",
        "vulnerability_found__handmade": "vulnerability_found",
    },
    "ecr": {
        "image_scan__doc-basic": "ECR Image Scan",
        "image_scan__lambda-go": "ECR Image Scan",
        "scan_resource_change__doc": "ECR Scan Resource Change",
        "image_action-push__handmade-failure": None,
    },
    "artifact-registry": {},
}
# Published samples that are refused, and why.
MALFORMED: dict[str, dict[str, str]] = {
    "harbor": {},
    "dockerhub": {
        "push__legacy-no-tag": "no tag",
        "callback__doc-not-a-webhook": "push_data",
    },
    "ghcr": {},
    "quay": {},
    "ecr": {},
    # Untagged INSERT whose only digest is truncated in the documentation: names nothing.
    "artifact-registry": {"message-data__doc-insert-truncated-digest": "neither"},
}
# Every HANDLED entry and a fixture that exercises it, with the event type it must yield.
COVERS: dict[str, dict[str, tuple[str, str]]] = {
    "harbor": {
        "PUSH_ARTIFACT": ("push_artifact__doc", "image.pushed"),
        "DELETE_ARTIFACT": ("delete_artifact__zulip", "image.deleted"),
        "SCANNING_COMPLETED": ("scanning_completed__zulip", "scan.completed"),
    },
    "dockerhub": {"push": ("push__doc", "image.pushed")},
    "ghcr": {
        "package published": ("package-published__octokit-docker", "image.pushed"),
        "package updated": ("package-updated__handmade-container-tag", "image.pushed"),
        "registry_package published": (
            "registry_package-published__octokit-docker",
            "image.pushed",
        ),
        "registry_package updated": (
            "registry_package-updated__handmade-container-tag",
            "image.pushed",
        ),
    },
    "quay": {"repo_push": ("repo_push__keel-tags-list", "image.pushed")},
    "ecr": {
        "ECR Image Action PUSH": ("image_action-push__doc-short-digest", "image.pushed"),
        "ECR Image Action DELETE": ("image_action-delete__doc-short-digest", "image.deleted"),
    },
    "artifact-registry": {
        "INSERT": ("message-data__doc-insert-tag-truncated-digest", "image.pushed"),
        "DELETE": ("message-data__doc-delete-tag", "image.deleted"),
    },
}


def _names(kind: str) -> list[str]:
    return sorted(p.stem for p in (DIR / kind).glob("*.json") if not p.stem.endswith(".headers"))


def _envelope(data: bytes, message_id: str) -> bytes:
    message = {"data": base64.b64encode(data).decode(), "messageId": message_id}
    return json.dumps({"message": message, "subscription": "projects/p/subscriptions/s"}).encode()


def _load(kind: str, name: str) -> tuple[dict[str, str], bytes]:
    body = (DIR / kind / f"{name}.json").read_bytes()
    headers_file = DIR / kind / f"{name}.headers.json"
    headers: dict[str, str] = json.loads(headers_file.read_text()) if headers_file.exists() else {}
    if kind == "artifact-registry" and name.startswith("message-data__"):
        body = _envelope(body, f"pubsub-{name}")
    return headers, body


def _as_tuple(event: ImagePushed | ImageDeleted | ScanCompleted) -> E:
    if isinstance(event, ScanCompleted):
        return scanned(event.repository, event.digest, event.tag, event.delivery_id)
    if isinstance(event, ImagePushed):
        return pushed(
            event.repository,
            event.digest,
            event.tag,
            event.actor,
            event.delivery_id,
            event.pushed_at,
        )
    return deleted(event.repository, event.digest, event.tag, event.delivery_id)


def _cases(table: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    return [(kind, name) for kind in KINDS for name in sorted(table[kind])]


# --- the fixtures and their expectations -------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_fixture_has_an_expectation(kind: str) -> None:
    expected = set(EXPECTED[kind]) | set(IGNORED[kind]) | set(MALFORMED[kind])
    assert set(_names(kind)) == expected
    assert len(expected) == len(EXPECTED[kind]) + len(IGNORED[kind]) + len(MALFORMED[kind])
    for headers_file in (DIR / kind).glob("*.headers.json"):
        assert (DIR / kind / headers_file.name.replace(".headers.json", ".json")).exists()


@pytest.mark.parametrize("kind", KINDS)
def test_every_handled_event_type_has_a_fixture(kind: str) -> None:
    module = MODULES[kind]
    assert set(COVERS[kind]) == set(module.HANDLED)
    assert not set(module.HANDLED) & set(module.IGNORED)
    for name, event_type in COVERS[kind].values():
        assert EXPECTED[kind][name], name
        assert {e.type for e in EXPECTED[kind][name]} == {event_type}
    for name, entry in IGNORED[kind].items():
        assert entry is None or entry in module.IGNORED, name


@pytest.mark.parametrize(("kind", "name"), _cases(EXPECTED))
def test_fixture_yields_exactly_the_expected_events(kind: str, name: str) -> None:
    headers, body = _load(kind, name)
    parsed = MODULES[kind].parse(headers, body, "reg")
    assert [_as_tuple(e) for e in parsed.events] == EXPECTED[kind][name]
    assert parsed.ignored == 0
    assert all(e.registry == "reg" for e in parsed.events)
    # A redelivery of the same bytes yields the same dedup keys.
    again = MODULES[kind].parse(headers, body, "reg")
    assert [e.delivery_id for e in again.events] == [e.delivery_id for e in parsed.events]


@pytest.mark.parametrize(("kind", "name"), _cases(IGNORED))
def test_valid_events_that_are_not_image_pushes_are_ignored(kind: str, name: str) -> None:
    parsed = MODULES[kind].parse(*_load(kind, name), "reg")
    assert parsed.events == []
    assert parsed.ignored == 1


@pytest.mark.parametrize(("kind", "name"), _cases(MALFORMED))
def test_samples_that_name_nothing_to_check_are_refused(kind: str, name: str) -> None:
    with pytest.raises(MalformedPayload, match=MALFORMED[kind][name]):
        MODULES[kind].parse(*_load(kind, name), "reg")


def test_one_delivery_with_several_images_gets_one_dedup_key_each() -> None:
    for kind, name in [
        ("harbor", "push_artifact__handmade-two-tags"),
        ("quay", "repo_push__handmade-two-tags-list"),
    ]:
        ids = [e.delivery_id for e in MODULES[kind].parse(*_load(kind, name), "r").events]
        assert len(ids) == len(set(ids)) == 2


def test_quay_tag_map_and_tag_list_forms_give_the_same_events() -> None:
    as_map = json.dumps({"repository": "acme/app", "updated_tags": {"v1": "x", "v2": "y"}})
    as_list = json.dumps({"repository": "acme/app", "updated_tags": ["v2", "v1", "v1"]})
    for body in (as_map, as_list):
        events = quay.parse({}, body.encode(), "q").events
        assert [(e.repository, e.tag, e.digest) for e in events] == [
            ("acme/app", "v1", None),
            ("acme/app", "v2", None),
        ]


def test_ghcr_falls_back_to_owner_and_name_without_package_url() -> None:
    body = json.loads(
        (DIR / "ghcr" / "registry_package-updated__handmade-container-tag.json").read_text()
    )
    del body["registry_package"]["package_version"]["package_url"]
    [event] = ghcr.parse(_GHCR_HEADERS, json.dumps(body).encode(), "g").events
    assert event.repository == "acme/my-app"


def test_artifact_registry_accepts_the_snake_case_message_id() -> None:
    data = (DIR / "artifact-registry" / "message-data__doc-delete-tag.json").read_bytes()
    message = {"data": base64.b64encode(data).decode(), "message_id": "42"}
    [event] = artifact_registry.parse({}, json.dumps({"message": message}).encode(), "a").events
    assert event.delivery_id == "42"


# --- malformed bodies --------------------------------------------------------------------------

_GHCR_HEADERS = {"X-GitHub-Event": "registry_package", "X-GitHub-Delivery": "d-1"}
DEFAULT_HEADERS: dict[str, dict[str, str]] = {"ghcr": _GHCR_HEADERS}
MARKER = "zzmarkerzz"
DEEP_ARRAY = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
GENERIC_BAD = [
    b"",
    b"not json",
    b"\xff\xfe{}",
    b"[]",
    b'"x"',
    b"null",
    b"42",
    DEEP_ARRAY,
    DEEP_OBJECT,
]
D64 = "sha256:" + "a" * 64


def _j(value: Any) -> bytes:
    return json.dumps(value).encode()


def _ar(data: Any) -> bytes:
    raw = data if isinstance(data, bytes) else _j(data)
    return _envelope(raw, "m-1")


def _harbor(resource: dict[str, Any], repo: str = "team-a/app", **top: Any) -> bytes:
    body = {
        "type": "PUSH_ARTIFACT",
        "occur_at": 1,
        "event_data": {"resources": [resource], "repository": {"repo_full_name": repo}},
    }
    return _j(body | top)


def _ecr(**detail: Any) -> bytes:
    base = {"result": "SUCCESS", "repository-name": "app", "action-type": "PUSH", "image-tag": "1"}
    return _j(
        {
            "id": "e-1",
            "detail-type": "ECR Image Action",
            "source": "aws.ecr",
            "detail": base | detail,
        }
    )


def _ghcr(version: dict[str, Any], action: str = "published") -> bytes:
    package = {"name": "app", "package_type": "CONTAINER", "owner": {"login": "acme"}}
    return _j({"action": action, "registry_package": package | {"package_version": version}})


SPECIFIC_BAD: dict[str, list[bytes]] = {
    "harbor": [
        _j({"type": "PUSH_ARTIFACT"}),
        _j({"type": ["PUSH_ARTIFACT"]}),
        _j({"type": "harbor.artifact.pushed", "specversion": "1.0"}),  # CloudEvents format
        _j({"type": f"{MARKER}!"}),
        _harbor({"digest": D64, "tag": "1"}, occur_at="yesterday"),
        _harbor({"digest": D64, "tag": "1"}, occur_at=10**30),
        _j({"type": "DELETE_ARTIFACT", "occur_at": 1, "event_data": {"resources": "x"}}),
        _j(
            {
                "type": "PUSH_ARTIFACT",
                "occur_at": 1,
                "event_data": {"resources": [], "repository": {"repo_full_name": "a"}},
            }
        ),
        _harbor({"digest": D64, "tag": "1"}, repo=f"../../{MARKER}"),
        _harbor({"digest": D64, "tag": "1"}, repo=f"Team-A/{MARKER}"),
        _harbor({"digest": "md5:abc", "tag": ""}),
        _harbor({"digest": D64, "tag": f"bad tag {MARKER}"}),
        _harbor({"digest": D64, "tag": "1"}, operator="x" * 500),
        _harbor({"digest": 5, "tag": "1"}),
    ],
    "dockerhub": [
        _j({"push_data": {"pushed_at": 1, "tag": "1"}}),
        _j({"push_data": [], "repository": {"repo_name": "a/b"}}),
        _j({"push_data": {"pushed_at": "x", "tag": "1"}, "repository": {"repo_name": "a/b"}}),
        _j({"push_data": {"pushed_at": 1.5, "tag": "1"}, "repository": {"repo_name": "a/b"}}),
        _j({"push_data": {"pushed_at": -1, "tag": "1"}, "repository": {"repo_name": "a/b"}}),
        _j(
            {
                "push_data": {"pushed_at": 1, "tag": f"a/{MARKER}"},
                "repository": {"repo_name": "a/b"},
            }
        ),
        _j({"push_data": {"pushed_at": 1, "tag": "1"}, "repository": {"repo_name": f"_/{MARKER}"}}),
        _j({"push_data": {"pushed_at": 1, "tag": ""}, "repository": {"repo_name": "a/b"}}),
        _j(
            {
                "push_data": {"pushed_at": 1, "tag": "1", "pusher": 7},
                "repository": {"repo_name": "a/b"},
            }
        ),
    ],
    "ghcr": [
        _j({"action": "published"}),
        _j({"action": 1, "registry_package": {"name": "a", "owner": {"login": "o"}}}),
        _j({"action": "published", "registry_package": "x"}),
        _ghcr({"version": "1.0.0", "container_metadata": {"tag": {"name": ""}}}),
        _ghcr({"version": D64, "package_url": f"ghcr.io/../{MARKER}:1"}),
        _ghcr({"version": D64, "container_metadata": {"tag": {"name": f"{MARKER}!"}}}),
        _ghcr({"version": D64, "container_metadata": {"tag": "latest"}}),
        _j(
            {
                "action": "published",
                "registry_package": {
                    "name": "a",
                    "package_type": "container",
                    "owner": {"login": "o"},
                },
            }
        ),
    ],
    "quay": [
        _j({"foo": 1}),
        _j({"repository": "a/b", "updated_tags": "latest"}),
        _j({"repository": "a/b", "updated_tags": []}),
        _j({"repository": "a/b", "updated_tags": {}}),
        _j({"repository": "a/b", "updated_tags": [1]}),
        _j({"repository": 5, "updated_tags": ["1"]}),
        _j({"updated_tags": ["1"]}),
        _j({"repository": f"A/{MARKER}", "updated_tags": ["1"]}),
        _j({"repository": "a/b", "updated_tags": [f"{MARKER}:1"]}),
    ],
    "ecr": [
        _j({"id": "1", "source": "aws.ecr"}),
        _j({"id": "1", "detail-type": f"{MARKER}\n", "source": "aws.ecr", "detail": {}}),
        _j({"id": "1", "detail-type": "ECR Image Action", "source": "aws.ecr"}),
        _j({"id": "1", "detail-type": 7}),
        _ecr(**{"action-type": f"{MARKER}<!channel>"}),
        _ecr(**{"repository-name": f"My_{MARKER}!"}),
        _ecr(**{"image-tag": f"{MARKER}/x"}),
        _ecr(**{"image-tag": None, "image-digest": "sha256:abc"}),
        _ecr(**{"image-digest": 12}),
        _j({"id": "", "detail-type": "ECR Image Action", "source": "aws.ecr", "detail": {}}),
        _j(json.loads(_ecr()) | {"source": "custom.app"}),
        _j(json.loads(_ecr()) | {"time": "not a time"}),
    ],
    "artifact-registry": [
        _j({"subscription": "s"}),
        _j({"message": {"data": "!!!", "messageId": "1"}}),
        _j({"message": {"data": "é", "messageId": "1"}}),
        _j({"message": {"data": 5, "messageId": "1"}}),
        _j({"message": {"data": base64.b64encode(b"{}").decode()}}),
        _j({"message": {"data": base64.b64encode(b"{}").decode(), "messageId": ""}}),
        _ar(b"not json"),
        _ar(DEEP_ARRAY),
        _ar(DEEP_OBJECT),
        _ar({"action": f"{MARKER}-1", "tag": "h/p/r/i:1"}),
        _ar({"action": "INSERT"}),
        _ar({"action": "INSERT", "digest": f"h/p/r/{MARKER}"}),
        _ar({"action": "INSERT", "tag": f"h/p/r/{MARKER}"}),
        _ar({"action": "INSERT", "tag": "nohost:1"}),
        _ar({"action": "INSERT", "digest": f"h/p/r/a@{D64}", "tag": "h/p/r/b:1"}),
        _ar({"action": "DELETE", "digest": f"h/p/r/{MARKER}!@{D64}"}),
        _ar({"action": "INSERT", "tag": ["h/p/r/i:1"]}),
    ],
}


def _malformed_cases() -> list[tuple[str, bytes]]:
    cases = [(kind, body) for kind in KINDS for body in GENERIC_BAD]
    return cases + [(kind, body) for kind in KINDS for body in SPECIFIC_BAD[kind]]


@pytest.mark.parametrize(("kind", "body"), _malformed_cases())
def test_malformed_bodies_raise_malformed_payload_without_echoing_them(
    kind: str, body: bytes
) -> None:
    with pytest.raises(MalformedPayload) as info:
        MODULES[kind].parse(DEFAULT_HEADERS.get(kind, {}), body, "reg")
    assert not isinstance(info.value, Unsupported)
    assert MARKER not in str(info.value)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-GitHub-Event": "registry_package"},
        {"X-GitHub-Delivery": "d-1"},
        {"X-GitHub-Event": f"{MARKER}\u2603", "X-GitHub-Delivery": "d-1"},
        {"X-GitHub-Event": "registry_package", "X-GitHub-Delivery": "d" * 201},
    ],
)
def test_ghcr_needs_its_event_and_delivery_headers(headers: dict[str, str]) -> None:
    _, body = _load("ghcr", "registry_package-published__octokit-docker")
    with pytest.raises(MalformedPayload) as info:
        ghcr.parse(headers, body, "g")
    assert not isinstance(info.value, Unsupported)
    assert MARKER not in str(info.value)


# --- the HANDLED and IGNORED tables, against the real samples ----------------------------------

#: For each kind whose deliveries name their type: a handled sample, and how to give it a type.
RETYPE: dict[str, str] = {
    "distribution": "push",
    "harbor": "push_artifact__doc",
    "ghcr": "registry_package-published__octokit-docker",
    "ecr": "image_action-push__handmade-full-digest",
    "artifact-registry": "envelope__handmade-insert-full-digest",
}
#: Types each of those sources might send one day and the bot does not know.
UNKNOWN: dict[str, list[str]] = {
    "distribution": ["frobnicate", "tag_moved"],
    "harbor": ["ARTIFACT_FROBNICATED", "DELETE_TAG"],
    "ghcr": ["push", "workflow_run", "package deleted", "registry_package yanked"],
    "ecr": ["ECR Image Frobnicated", "ECR Image Action TAG", "ECR Image Action COPY"],
    "artifact-registry": ["UPDATE", "TAG_MOVED"],
}
#: Where dockerhub and quay have no type field: shapes of other events, by IGNORED entry.
SHAPES: dict[str, dict[str, dict[str, Any]]] = {
    "quay": {
        "build_*": {"repository": "a/b", "build_id": "x", "build_name": "n"},
        "vulnerability_found": {"repository": "a/b", "vulnerability": {"id": "CVE-1"}},
        "repo_mirror_sync_*": {"repository": "a/b", "message": "done"},
        "repo_image_expiry": {"repository": "a/b", "tags": ["old"]},
    },
}


def retyped(kind: str, name: str) -> tuple[dict[str, str], bytes]:
    """The handled sample RETYPE[kind], its event type (or type and action) set to `name`."""
    if kind == "distribution":
        headers, body = _load_distribution(RETYPE[kind])
        document = json.loads(body)
        for event in document["events"]:
            event["action"] = name
        return headers, _j(document)
    headers, body = _load(kind, RETYPE[kind])
    document = json.loads(body)
    if kind == "harbor":
        document["type"] = name
    elif kind == "ghcr":
        event, _, action = name.partition(" ")
        headers = headers | {"X-GitHub-Event": event}
        if action:
            document = {"action": action, event: document["registry_package"]}
    elif kind == "ecr":
        detail_type, _, action = name.partition("ECR Image Action ")
        document["detail-type"] = detail_type or "ECR Image Action"
        if action:
            document["detail"]["action-type"] = action
    else:
        message = document["message"]
        note = json.loads(base64.b64decode(message["data"])) | {"action": name}
        message["data"] = base64.b64encode(_j(note)).decode()
    return headers, _j(document)


def _load_distribution(name: str) -> tuple[dict[str, str], bytes]:
    folder = DIR / "distribution"
    body = (folder / f"{name}.json").read_bytes()
    headers = json.loads((folder / f"{name}.headers.json").read_text())
    return headers, body


ALL_MODULES: dict[str, ModuleType] = MODULES | {"distribution": distribution}


def _ignored_cases() -> list[tuple[str, str]]:
    cases = [(kind, name) for kind in sorted(RETYPE) for name in sorted(ALL_MODULES[kind].IGNORED)]
    return cases + [(kind, name) for kind in sorted(SHAPES) for name in sorted(SHAPES[kind])]


@pytest.mark.parametrize("kind", sorted(ALL_MODULES))
def test_every_provider_has_handled_and_ignored_tables(kind: str) -> None:
    module = ALL_MODULES[kind]
    assert module.HANDLED and all(callable(h) for h in module.HANDLED.values())
    assert isinstance(module.IGNORED, frozenset)
    assert not set(module.HANDLED) & module.IGNORED
    assert set(SHAPES.get(kind, {})) <= module.IGNORED


@pytest.mark.parametrize(("kind", "name"), _ignored_cases())
def test_every_ignored_type_gives_no_event(kind: str, name: str) -> None:
    if kind in SHAPES:
        headers, body = {}, _j(SHAPES[kind][name])
    else:
        headers, body = retyped(kind, name)
    parsed = ALL_MODULES[kind].parse(headers, body, "reg")
    assert parsed.events == []
    assert parsed.ignored == len(json.loads(body).get("events", [None]))
    assert parsed.unsupported == 0


@pytest.mark.parametrize(
    ("kind", "name"), [(kind, name) for kind in sorted(UNKNOWN) for name in UNKNOWN[kind]]
)
def test_an_unknown_type_is_unsupported_not_malformed(kind: str, name: str) -> None:
    with pytest.raises(Unsupported) as info:
        ALL_MODULES[kind].parse(*retyped(kind, name), "reg")
    assert name.rpartition(" ")[2] in str(info.value)
    assert "unsupported" in str(info.value)
    assert info.value.events == 1


@pytest.mark.parametrize(
    ("kind", "name"),
    [(kind, name) for kind in sorted(RETYPE) for name in ALL_MODULES[kind].HANDLED],
)
def test_retyping_a_sample_to_a_handled_type_parses(kind: str, name: str) -> None:
    """The other half of the two tests above: the retyping itself keeps a sample valid."""
    parsed = ALL_MODULES[kind].parse(*retyped(kind, name), "reg")
    assert parsed.events or parsed.ignored
    assert parsed.unsupported == 0


def test_a_distribution_batch_counts_its_unsupported_events_and_keeps_the_others() -> None:
    _, push = _load_distribution("push")
    _, pull = _load_distribution("pull__manifest-get")
    odd = json.loads(push)["events"][0] | {"id": "odd-1", "action": "frobnicate"}
    events = json.loads(push)["events"] + json.loads(pull)["events"] + [odd, odd | {"id": "o2"}]
    parsed = distribution.parse({}, _j({"events": events}), "reg")
    assert [e.delivery_id for e in parsed.events] == [json.loads(push)["events"][0]["id"]]
    assert (parsed.ignored, parsed.unsupported) == (1, 2)
    with pytest.raises(Unsupported) as info:
        distribution.parse({}, _j({"events": [odd, odd | {"id": "o2"}]}), "reg")
    assert info.value.events == 2


@pytest.mark.parametrize(
    ("kind", "headers", "body"),
    [
        ("ghcr", {"X-GitHub-Event": "package"}, b"{}"),  # no delivery id
        ("ghcr", _GHCR_HEADERS, _j({"action": "Published!"})),  # an action of no GitHub shape
        ("artifact-registry", {}, _j({"message": {"data": "e30="}})),  # no message id
    ],
)
def test_an_unknown_type_does_not_excuse_a_malformed_delivery(
    kind: str, headers: dict[str, str], body: bytes
) -> None:
    with pytest.raises(MalformedPayload) as info:
        ALL_MODULES[kind].parse(headers, body, "reg")
    assert not isinstance(info.value, Unsupported)


# --- verify -------------------------------------------------------------------------------------


def _registry(kind: str, secret: str | None) -> Registry:
    return Registry.model_validate(
        {
            "name": "reg",
            "kind": RegistryKind(kind),
            "url": "https://registry.example",
            "webhook_secret": secret,
        }
    )


def _signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _credentials(kind: str, secret: str, body: bytes) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, query) as each source presents the secret (CONTRACT.md)."""
    if kind == "harbor":
        return {"Authorization": secret}, {}
    if kind == "ecr":
        return {"Authorization": f"Bearer {secret}"}, {}
    if kind == "ghcr":
        return {"X-Hub-Signature-256": _signature(secret, body)}, {}
    return {}, {"token": secret}


_BODY = b'{"any": "body"}'


@pytest.mark.parametrize("kind", KINDS)
def test_verify_accepts_the_configured_secret(kind: str) -> None:
    headers, query = _credentials(kind, SECRET, _BODY)
    MODULES[kind].verify(headers, query, _BODY, _registry(kind, SECRET))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("wrong", ["wrong", SECRET + "x", SECRET[:-1], SECRET.upper(), ""])
def test_verify_refuses_a_wrong_secret(kind: str, wrong: str) -> None:
    headers, query = _credentials(kind, wrong, _BODY)
    with pytest.raises(Unauthorized) as info:
        MODULES[kind].verify(headers, query, _BODY, _registry(kind, SECRET))
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_verify_refuses_a_missing_secret(kind: str) -> None:
    with pytest.raises(Unauthorized):
        MODULES[kind].verify({}, {}, _BODY, _registry(kind, SECRET))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("configured", [None, ""])
def test_verify_refuses_everything_when_no_secret_is_configured(
    kind: str, configured: str | None
) -> None:
    headers, query = _credentials(kind, "", _BODY)
    with pytest.raises(Unauthorized):
        MODULES[kind].verify(headers, query, _BODY, _registry(kind, configured))


@pytest.mark.parametrize("kind", KINDS)
def test_verify_survives_headers_that_are_not_plain_text(kind: str) -> None:
    junk = "\udcff\u2603\x00"
    with pytest.raises(Unauthorized):
        MODULES[kind].verify(
            {"Authorization": junk, "X-Hub-Signature-256": junk},
            {"token": junk},
            _BODY,
            _registry(kind, SECRET),
        )


@pytest.mark.parametrize("header", [SECRET, f"Bearer {SECRET}"])
def test_harbor_accepts_the_secret_with_or_without_bearer(header: str) -> None:
    harbor.verify({"Authorization": header}, {}, b"", _registry("harbor", SECRET))


@pytest.mark.parametrize(
    "header", [f"Bearer  {SECRET}", f"Basic {SECRET}", f"{SECRET} ", f"bearer{SECRET}", "Bearer "]
)
def test_harbor_refuses_other_authorization_forms(header: str) -> None:
    with pytest.raises(Unauthorized):
        harbor.verify({"Authorization": header}, {}, b"", _registry("harbor", SECRET))


@pytest.mark.parametrize("header", ["", "s3cret", SECRET, f"Bearer  {SECRET}", f"Basic {SECRET}"])
def test_ecr_refuses_anything_but_the_bearer_form(header: str) -> None:
    with pytest.raises(Unauthorized):
        ecr.verify({"Authorization": header}, {}, b"", _registry("ecr", SECRET))


@pytest.mark.parametrize("name", sorted(EXPECTED["ghcr"]))
def test_ghcr_signature_over_the_raw_fixture_bytes_verifies(name: str) -> None:
    headers, body = _load("ghcr", name)
    signed = headers | {"X-Hub-Signature-256": _signature(SECRET, body)}
    ghcr.verify(signed, {}, body, _registry("ghcr", SECRET))


def test_ghcr_signature_fails_for_a_tampered_or_reformatted_body() -> None:
    headers, body = _load("ghcr", "registry_package-published__octokit-docker")
    signed = headers | {"X-Hub-Signature-256": _signature(SECRET, body)}
    tampered = body.replace(b"github-actions[bot]", b"github-actionz[bot]")
    assert tampered != body
    reformatted = json.dumps(json.loads(body)).encode()
    for other in (tampered, reformatted, body + b"\n", body[:-1]):
        with pytest.raises(Unauthorized):
            ghcr.verify(signed, {}, other, _registry("ghcr", SECRET))
    for header in ("", _signature(SECRET, body).removeprefix("sha256="), _signature("other", body)):
        with pytest.raises(Unauthorized):
            ghcr.verify({"X-Hub-Signature-256": header}, {}, body, _registry("ghcr", SECRET))


# --- the samples are the real captures ---------------------------------------------------------

REAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"


def test_every_sample_not_marked_handmade_is_a_real_capture_byte_for_byte() -> None:
    if not REAL.is_dir():
        pytest.skip(f"{REAL} is not on this machine")
    real = {hashlib.sha256(p.read_bytes()).digest() for p in REAL.rglob("*.json")}
    samples = [
        p
        for p in DIR.rglob("*.json")
        if not p.name.endswith(".headers.json") and "__handmade" not in p.name
    ]
    assert len(samples) > 40
    assert [p.name for p in samples if hashlib.sha256(p.read_bytes()).digest() not in real] == []
