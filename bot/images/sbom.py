"""A CycloneDX JSON SBOM of an image's packages (what `crowsnest scan --sbom PATH` writes).

The BOM's metadata component is the container image (type `container`, version = the manifest
digest, its SHA-256 as a hash and an `oci` purl); each package is a `library` component whose
`bom-ref` is its purl, with the ecosystem and distribution as `crowsnest:*` properties. The
image depends on every package (the inventory has no package-to-package edges).

OS packages are listed as the binary packages their purls name (`libssl3`), not as the source
packages `Package.name` gives for matching (`openssl`); the source is a property.

The output is checked against the CycloneDX 1.6 JSON schema when the library's optional
`jsonschema` dependency is installed (`cyclonedx-python-lib[json-validation]`); without it,
it is not checked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cyclonedx.exception import MissingOptionalDependencyException
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from bot.images.reference import InvalidReference, parse_reference
from bot.vulns.package import Package

SCHEMA_VERSION = SchemaVersion.V1_6
TOOL_NAME = "crows-nest"
_DIGEST = re.compile(r"(?P<alg>[a-z0-9]+(?:[+._-][a-z0-9]+)*):(?P<hex>[0-9a-fA-F]{32,})")


class SbomError(Exception):
    """The SBOM could not be made, or failed its schema check."""


def cyclonedx_json(image_ref: str, digest: str, packages: Sequence[Package]) -> str:
    """The CycloneDX 1.6 JSON SBOM of `packages`, for the image `image_ref`
    (`host[:port]/repo[:tag][@digest]`) whose manifest digest is `digest`."""
    bom = Bom()
    image = _image_component(image_ref, digest)
    bom.metadata.component = image
    bom.metadata.tools.components.add(Component(name=TOOL_NAME, type=ComponentType.APPLICATION))
    refs: set[str] = set()
    components = []
    for package in packages:
        component = _package_component(package, refs)
        bom.components.add(component)
        components.append(component)
    bom.register_dependency(image, components)
    text = str(JsonV1Dot6(bom).output_as_string(indent=2))
    _validate(text)
    return text


def _validate(text: str) -> None:
    try:
        error = JsonStrictValidator(SCHEMA_VERSION).validate_str(text)
    except MissingOptionalDependencyException:
        return  # jsonschema is not installed: nothing to check with
    if error is not None:
        raise SbomError(f"the SBOM does not match the CycloneDX schema: {error}")


def split_image_ref(image_ref: str) -> tuple[str, str | None, str | None]:
    """`host:5000/team/app:1.0@sha256:…` -> (`host:5000/team/app`, `1.0`, `sha256:…`);
    raises `SbomError` for what is not an image reference."""
    try:
        ref = parse_reference(image_ref.strip())
    except InvalidReference as exc:
        raise SbomError(f"not an image reference: {image_ref!r} ({exc})") from None
    return ref.name, ref.tag, ref.digest


def _image_component(image_ref: str, digest: str) -> Component:
    repository, tag, ref_digest = split_image_ref(image_ref)
    digest = digest or ref_digest or ""
    name = repository.rpartition("/")[2].lower() or repository
    hashes = []
    m = _DIGEST.fullmatch(digest)
    if m and m["alg"] == "sha256":
        hashes.append(HashType(alg=HashAlgorithm.SHA_256, content=m["hex"].lower()))
    purl = None
    if name and digest:
        qualifiers = {"repository_url": repository}
        if tag:
            qualifiers["tag"] = tag
        purl = PackageURL(type="oci", name=name, version=digest, qualifiers=qualifiers)
    return Component(
        name=repository,
        version=digest or tag,
        type=ComponentType.CONTAINER,
        bom_ref=f"image:{repository}@{digest or tag or ''}",
        hashes=hashes,
        purl=purl,
        properties=[Property(name="crowsnest:image_ref", value=image_ref)],
    )


def _package_component(package: Package, refs: set[str]) -> Component:
    purl = _parse_purl(package.purl)
    group: str | None = None
    name, version = package.name, package.version
    properties = [Property(name="crowsnest:ecosystem", value=package.ecosystem)]
    if package.distro:
        properties.append(Property(name="crowsnest:distro", value=package.distro))
    if purl is not None:
        if purl.type in ("maven", "npm"):
            group, name = purl.namespace or None, str(purl.name)
        elif purl.type in ("deb", "apk"):  # the binary package, not the source one
            name, version = str(purl.name), str(purl.version or version)
            if (name, version) != (package.name, package.version):
                source = f"{package.name}@{package.version}"
                properties.append(Property(name="crowsnest:source_package", value=source))
    ref = package.purl or f"{package.ecosystem}/{package.name}@{package.version}"
    base, n = ref, 1
    while ref in refs:  # bom-refs must be unique; two packages may share a purl
        n += 1
        ref = f"{base}#{n}"
    refs.add(ref)
    return Component(
        name=name,
        group=group,
        version=version,
        type=ComponentType.LIBRARY,
        bom_ref=ref,
        purl=purl,
        properties=properties,
    )


def _parse_purl(text: str | None) -> PackageURL | None:
    if not text:
        return None
    try:
        return PackageURL.from_string(text)
    except ValueError:
        return None
