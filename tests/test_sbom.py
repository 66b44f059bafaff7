"""The CycloneDX JSON SBOM of an image's inventory."""

from __future__ import annotations

import importlib.util
import json

import pytest

from bot.images.sbom import SbomError, cyclonedx_json, split_image_ref
from bot.vulns.package import Package
from tests.test_inventory import DEBIAN_BASE, DEBIAN_UPPER, EXPECTED_DEBIAN, image, packages

DIGEST = "sha256:" + "c3ae53901fb40c94dca4688a0ec6037be1e3e2b723cc06af5ba285b98ad254e9"
REF = "127.0.0.1:5000/team-a/app:1.0"


def sbom(found: list[Package] = EXPECTED_DEBIAN) -> dict[str, object]:
    doc = json.loads(cyclonedx_json(REF, DIGEST, found))
    assert isinstance(doc, dict)
    return doc


def test_sbom_shape_and_every_purl() -> None:
    doc = sbom()
    assert doc["bomFormat"] == "CycloneDX"
    assert doc["specVersion"] == "1.6"
    assert str(doc["serialNumber"]).startswith("urn:uuid:")
    components = doc["components"]
    assert isinstance(components, list)
    purls = {c["purl"] for c in components}
    assert purls == {p.purl for p in EXPECTED_DEBIAN}
    assert {c["type"] for c in components} == {"library"}
    assert {c["bom-ref"] for c in components} == purls


def test_the_image_is_the_metadata_component() -> None:
    doc = sbom()
    meta = doc["metadata"]
    assert isinstance(meta, dict)
    image_component = meta["component"]
    assert image_component["type"] == "container"
    assert image_component["name"] == "127.0.0.1:5000/team-a/app"
    assert image_component["version"] == DIGEST
    assert image_component["hashes"] == [{"alg": "SHA-256", "content": DIGEST.split(":")[1]}]
    assert image_component["purl"] == (
        f"pkg:oci/app@sha256:{DIGEST.split(':')[1]}"
        "?repository_url=127.0.0.1:5000/team-a/app&tag=1.0"
    )
    deps = {d["ref"]: d.get("dependsOn", []) for d in doc["dependencies"]}  # type: ignore[attr-defined]
    assert set(deps[image_component["bom-ref"]]) == {p.purl for p in EXPECTED_DEBIAN}
    tools = meta["tools"]["components"]
    assert "crows-nest" in {t["name"] for t in tools}


def test_components_name_the_installed_packages() -> None:
    by_purl = {c["purl"]: c for c in sbom()["components"]}  # type: ignore[attr-defined]
    libssl = by_purl["pkg:deb/debian/libssl3@3.0.11-1~deb12u2?distro=debian-12&upstream=openssl"]
    assert (libssl["name"], libssl["version"]) == ("libssl3", "3.0.11-1~deb12u2")
    props = {p["name"]: p["value"] for p in libssl["properties"]}
    assert props == {
        "crowsnest:ecosystem": "Debian",
        "crowsnest:distro": "Debian:12",
        "crowsnest:source_package": "openssl@3.0.11-1~deb12u2",
    }
    node = by_purl["pkg:npm/%40types/node@20.11.5"]
    assert (node["group"], node["name"], node["version"]) == ("@types", "node", "20.11.5")
    log4j = by_purl["pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"]
    assert (log4j["group"], log4j["name"]) == ("org.apache.logging.log4j", "log4j-core")


def test_from_a_real_inventory_and_odd_packages() -> None:
    found = [
        *packages(image(DEBIAN_BASE, DEBIAN_UPPER)),
        Package("PyPI", "no-purl", "1.0"),
        Package("PyPI", "twin", "1.0", "pkg:pypi/twin@1.0"),
        Package("PyPI", "Twin", "1.0", "pkg:pypi/twin@1.0"),  # the same purl twice
    ]
    doc = sbom(found)
    refs = [c["bom-ref"] for c in doc["components"]]  # type: ignore[attr-defined]
    assert len(refs) == len(set(refs)) == len(found)
    assert "PyPI/no-purl@1.0" in refs and "pkg:pypi/twin@1.0#2" in refs


def test_empty_inventory_and_a_digest_only_ref() -> None:
    doc = json.loads(cyclonedx_json(f"registry.example/app@{DIGEST}", DIGEST, []))
    assert doc.get("components", []) == []
    assert doc["metadata"]["component"]["name"] == "registry.example/app"


def test_split_image_ref() -> None:
    assert split_image_ref("host:5000/a/b:1.0") == ("host:5000/a/b", "1.0", None)
    assert split_image_ref("host:5000/a/b") == ("host:5000/a/b", None, None)
    assert split_image_ref(f"b:2@{DIGEST}") == ("b", "2", DIGEST)


@pytest.mark.skipif(
    importlib.util.find_spec("jsonschema") is None,
    reason="cyclonedx-python-lib's JSON validation needs jsonschema, not installed",
)
def test_valid_against_the_cyclonedx_schema() -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = cyclonedx_json(REF, DIGEST, EXPECTED_DEBIAN)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None


def test_a_schema_failure_is_an_sbom_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Failing:
        def __init__(self, version: object) -> None:
            pass

        def validate_str(self, text: str) -> str:
            return "components[0]: 'name' is a required property"

    monkeypatch.setattr("bot.images.sbom.JsonStrictValidator", Failing)
    with pytest.raises(SbomError, match="required property"):
        cyclonedx_json(REF, DIGEST, EXPECTED_DEBIAN)
