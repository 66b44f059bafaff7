"""Docker Distribution notifications, as captured from a real registry, parse to domain events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.config import Registry, RegistryKind
from bot.model.events import ImageDeleted, ImagePushed
from handlers.registry import distribution
from handlers.registry.errors import MalformedPayload, Unauthorized

DIR = Path(__file__).parent / "fixtures" / "registry" / "distribution"
APP_10 = "sha256:c3ae53901fb40c94dca4688a0ec6037be1e3e2b723cc06af5ba285b98ad254e9"
APP_11 = "sha256:053f09fa9b7335eff22e948e83008b9218c8732771722b58c9e7dcfaa0860a21"
MULTI = "sha256:12074fe46898dc3500030f432dfc91498b79dd36603336743a247bc1f591a9bc"
LEGACY = "sha256:d1a540dacbd37c69cd65c16b5e427d55320a69092da2bb10548c6e624a012e0e"

# fixture -> (repository, digest, tag, actor) for each event expected, kept apart from the code.
PUSHES: dict[str, list[tuple[str, str, str, str | None]]] = {
    "push": [("team-a/app", APP_10, "1.0", None)],
    "push__actor-alice": [("team-a/app", APP_10, "1.0-auth", "alice")],
    "push__docker-v2s2": [("team-a/legacy", LEGACY, "1.0", None)],
    "push__no-references": [("team-c/svc", APP_11, "2.0", None)],
    "push__oci-index": [("team-a/app", MULTI, "multi", None)],
    "push__tag-only-existing-blobs": [("team-a/app", APP_10, "latest", None)],
}
IGNORED = {
    "push__blob-config",
    "push__blob-layer",
    "push__index-child-untagged",
    "mount__blob",
    "pull__blob-config",
    "pull__blob-head-during-push",
    "pull__manifest-get",
    "pull__manifest-get-404-no-accept",
    "pull__manifest-head",
    "pull__url-from-client-host-header",
    "pull__url-from-x-forwarded-host",
    "doc-pull-example",
}
LAYER = "sha256:1a84b3d754fad1bb2b60589126b8d13caf3430899c4684ee0358d7c070c3ce99"
# A blob delete looks exactly like a manifest delete (digest, repository, no mediaType); marking
# an image deleted by a blob digest matches no image, so both are passed on.
DELETES = {
    "delete__blob": ("team-b/app", LAYER, None),
    "delete__manifest": ("team-a/app", APP_11, None),
    "delete__manifest-skopeo": ("team-a/legacy", LEGACY, None),
    "delete__tag": ("team-a/app", None, "1.1"),
}
CAPTURES = sorted(p.stem for p in DIR.glob("*.json") if not p.stem.endswith(".headers"))


def _load(name: str) -> tuple[dict[str, str], bytes]:
    body = (DIR / f"{name}.json").read_bytes()
    headers_file = DIR / f"{name}.headers.json"
    headers = json.loads(headers_file.read_text()) if headers_file.exists() else {}
    return headers, body


def test_every_capture_has_an_expectation() -> None:
    expected = set(PUSHES) | IGNORED | set(DELETES) | {"doc-example"}
    assert set(CAPTURES) == expected


@pytest.mark.parametrize("name", sorted(PUSHES))
def test_manifest_push_with_tag_becomes_image_pushed(name: str) -> None:
    headers, body = _load(name)
    parsed = distribution.parse(headers, body, "local")
    got = [(e.repository, e.digest, e.tag, e.actor) for e in parsed.events]
    assert got == PUSHES[name]
    assert all(isinstance(e, ImagePushed) and e.registry == "local" for e in parsed.events)
    assert parsed.events[0].delivery_id == json.loads(body)["events"][0]["id"]


@pytest.mark.parametrize("name", sorted(IGNORED))
def test_blob_pull_mount_and_untagged_events_are_ignored(name: str) -> None:
    headers, body = _load(name)
    parsed = distribution.parse(headers, body, "local")
    assert parsed.events == []
    assert parsed.ignored == len(json.loads(body)["events"])


@pytest.mark.parametrize("name", sorted(DELETES))
def test_deletes_name_the_digest_or_the_tag(name: str) -> None:
    parsed = distribution.parse(*_load(name), "local")
    assert [(e.repository, e.digest, e.tag) for e in parsed.events] == [DELETES[name]]
    assert isinstance(parsed.events[0], ImageDeleted)


def test_documentation_example_has_only_tagless_events_so_nothing_to_check() -> None:
    # The docs' example pushes by digest (no tag) and pulls: valid, and nothing to announce.
    parsed = distribution.parse({}, (DIR / "doc-example.json").read_bytes(), "local")
    assert parsed.events == []
    assert parsed.ignored == len(json.loads((DIR / "doc-example.json").read_bytes())["events"])


def test_url_from_attackers_host_header_is_not_in_the_event() -> None:
    body = json.loads(_load("push")[1])
    body["events"][0]["target"]["url"] = "http://evil.example:8443/v2/x/manifests/sha256:00"
    body["events"][0]["request"]["host"] = "evil.example:8443"
    [event] = distribution.parse({}, json.dumps(body).encode(), "local").events
    assert "evil" not in event.model_dump_json()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'{"events": "x"}',
        b'{"events": [{"id": "1", "action": "push"}]}',
        b'{"events": [{"id": "1", "action": "push", "target": {"repository": "../../etc",'
        b' "mediaType": "application/vnd.oci.image.manifest.v1+json", "tag": "1",'
        b' "digest": "sha256:' + b"a" * 64 + b'"}}]}',
        b'{"events": [{"id": "1", "action": "push", "target": {"repository": "a",'
        b' "mediaType": "application/vnd.oci.image.manifest.v1+json", "tag": "1",'
        b' "digest": "md5:abc"}}]}',
        b"[" * 10_000 + b"]" * 10_000,
    ],
)
def test_malformed_bodies_raise_malformed_payload(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        distribution.parse({}, body, "local")


def _registry(secret: str | None) -> Registry:
    return Registry(
        name="local",
        kind=RegistryKind.DISTRIBUTION,
        url="http://127.0.0.1:5000",  # type: ignore[arg-type]
        webhook_secret=secret,  # type: ignore[arg-type]
    )


def test_verify_accepts_the_configured_bearer_token() -> None:
    distribution.verify({"Authorization": "Bearer s3cret"}, {}, b"", _registry("s3cret"))


@pytest.mark.parametrize("header", ["", "Bearer wrong", "s3cret", "Bearer s3cret ", "Basic s3cret"])
def test_verify_refuses_anything_else(header: str) -> None:
    with pytest.raises(Unauthorized):
        distribution.verify({"Authorization": header}, {}, b"", _registry("s3cret"))


def test_verify_refuses_when_no_secret_is_configured() -> None:
    with pytest.raises(Unauthorized):
        distribution.verify({"Authorization": "Bearer "}, {}, b"", _registry(None))
