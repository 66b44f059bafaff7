"""The OCI client: auth schemes, only configured hosts, digests verified, limits enforced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Registry, RegistryKind
from bot.images.registry_client import PermanentRegistryError, RegistryClient, RegistryError
from tests.support.fake_registry import FakeRegistry
from tests.support.oci import ImageSpec, write_layout
from tests.support.services import skopeo_push, start_registry


def _cfg(url: str, **kw: Any) -> Registry:
    return Registry(name="r", kind=RegistryKind.DISTRIBUTION, url=url, **kw)


@pytest.fixture
async def client() -> AsyncIterator[RegistryClient]:
    c = RegistryClient()
    await c.open()
    yield c
    await c.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeRegistry]:
    f = FakeRegistry()
    yield f
    await f.stop()


CONFIG = {"architecture": "amd64", "os": "linux", "config": {"User": "app", "Env": ["A=1"]}}


async def test_bearer_token_is_fetched_from_the_registrys_realm(client, fake) -> None:  # type: ignore[no-untyped-def]
    fake.auth = "bearer"
    await fake.start()
    digest = fake.add_image("team/app", "1.0", CONFIG)
    facts = await client.image_facts(
        _cfg(fake.url, username="bot", password="pw"), "team/app", "1.0", "1.0"
    )
    assert facts.digest == digest
    assert facts.platforms[0].user == "app" and facts.platforms[0].platform == "linux/amd64"
    assert fake.token_requests == [{"service": "fake", "scope": "repository:x:pull"}]


async def test_token_realm_on_another_host_is_refused_and_never_contacted(client, fake) -> None:  # type: ignore[no-untyped-def]
    attacker = FakeRegistry(host="127.0.0.1")
    await attacker.start()
    fake.auth = "bearer"
    fake.realm = f"http://localhost:{attacker.port}/token"
    await fake.start()
    fake.add_image("team/app", "1.0", CONFIG)
    try:
        with pytest.raises(PermanentRegistryError, match="refusing to contact"):
            await client.image_facts(
                _cfg(fake.url, password="pw", username="bot"), "team/app", "1.0", "1.0"
            )
        assert attacker.token_requests == [] and attacker.requests == []
    finally:
        await attacker.stop()


async def test_trusted_token_host_is_allowed(client, fake) -> None:  # type: ignore[no-untyped-def]
    auth = FakeRegistry()
    await auth.start()
    fake.auth = "bearer"
    fake.realm = f"http://localhost:{auth.port}/token"
    await fake.start()
    fake.add_image("team/app", "1.0", CONFIG)
    try:
        cfg = _cfg(fake.url, trusted_hosts=(f"localhost:{auth.port}",))
        facts = await client.image_facts(cfg, "team/app", "1.0", "1.0")
        assert facts.platforms[0].user == "app" and len(auth.token_requests) == 1
    finally:
        await auth.stop()


async def test_redirect_to_an_unconfigured_host_is_refused(client, fake) -> None:  # type: ignore[no-untyped-def]
    elsewhere = FakeRegistry()
    await elsewhere.start()
    fake.redirect_blobs_to = f"http://localhost:{elsewhere.port}"
    await fake.start()
    fake.add_image("team/app", "1.0", CONFIG)
    try:
        with pytest.raises(PermanentRegistryError, match="refusing to contact"):
            await client.image_facts(_cfg(fake.url), "team/app", "1.0", "1.0")
        assert elsewhere.requests == []
    finally:
        await elsewhere.stop()


async def test_manifest_that_does_not_match_its_digest_is_rejected(client, fake) -> None:  # type: ignore[no-untyped-def]
    await fake.start()
    digest = fake.add_image("team/app", "1.0", CONFIG)
    fake.corrupt = True
    with pytest.raises(PermanentRegistryError, match="digest mismatch"):
        await client.image_facts(_cfg(fake.url), "team/app", digest, "1.0")


async def test_hanging_registry_times_out_as_retryable(client, fake) -> None:  # type: ignore[no-untyped-def]
    fake.hang = True
    await fake.start()
    with pytest.raises(RegistryError) as err:
        await client.image_facts(_cfg(fake.url, timeout=0.3), "team/app", "1.0", "1.0")
    assert not isinstance(err.value, PermanentRegistryError)


async def test_oversize_config_is_refused(client, fake) -> None:  # type: ignore[no-untyped-def]
    await fake.start()
    big = {**CONFIG, "padding": "x" * 5000}
    fake.add_image("team/app", "1.0", big)
    with pytest.raises(PermanentRegistryError, match="over 4096"):
        await client.image_facts(_cfg(fake.url, max_blob_bytes=4096), "team/app", "1.0", "1.0")


async def test_unknown_manifest_is_permanent(client, fake) -> None:  # type: ignore[no-untyped-def]
    await fake.start()
    with pytest.raises(PermanentRegistryError, match="404"):
        await client.image_facts(_cfg(fake.url), "team/app", "nope", "nope")


async def test_unreachable_registry_is_retryable(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RegistryError) as err:
        await client.image_facts(_cfg("http://127.0.0.1:9"), "team/app", "1.0", "1.0")
    assert not isinstance(err.value, PermanentRegistryError)


@pytest.mark.services
async def test_basic_auth_against_the_real_registry(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry = start_registry(tmp_path / "reg", None, auth=("alice", "s3cret"))
    try:
        write_layout(tmp_path / "layout", {"1.0": ImageSpec(user="root")})
        skopeo_push(
            tmp_path / "layout", "1.0", f"{registry.host}/team-a/app:1.0", creds=("alice", "s3cret")
        )
        facts = await client.image_facts(
            _cfg(registry.url, username="alice", password="s3cret"), "team-a/app", "1.0", "1.0"
        )
        assert facts.platforms[0].user == "root"
        with pytest.raises(PermanentRegistryError, match="401"):
            await client.image_facts(
                _cfg(registry.url, username="alice", password="wrong"), "team-a/app", "1.0", "1.0"
            )
    finally:
        registry.stop()


async def test_a_layer_with_a_hostile_media_type_is_named_briefly_and_the_rest_is_still_read(
    client,
    fake,  # type: ignore[no-untyped-def]
) -> None:
    """The manifest's own words reach a `layers-not-scanned` finding: cut to a few hundred
    characters, whatever the pusher wrote (a manifest may be megabytes)."""
    import json

    from tests.support.fake_registry import OCI_MANIFEST, digest_of

    await fake.start()
    fake.add_image("team/app", "1.0", CONFIG)
    _, body = fake.manifests["team/app:1.0"]
    manifest = json.loads(body)
    manifest["layers"] = [{"mediaType": "x" * 100_000, "digest": "sha256:" + "a" * 64, "size": 1}]
    hostile = json.dumps(manifest).encode()
    fake.manifests["team/app:evil"] = (OCI_MANIFEST, hostile)
    fake.manifests[f"team/app:{digest_of(hostile)}"] = (OCI_MANIFEST, hostile)
    facts = await client.image_facts(_cfg(fake.url), "team/app", "evil", "evil")
    [platform] = facts.platforms
    [layer] = platform.unscanned
    assert platform.user == "app" and platform.filesystem is not None
    assert "has media type" in layer.reason and len(layer.reason) <= 300
    assert not layer.transient
