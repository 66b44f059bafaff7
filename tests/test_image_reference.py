"""`bot.images.reference`: the distribution project's own test tables, and what each caller
(policy, `ImageRef`, the SBOM, `/crowsnest status`) reads from a reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.images.facts import ImageRef
from bot.images.reference import (
    InvalidReference,
    parse_normalized,
    parse_reference,
    split_domain,
)

VECTORS = json.loads(
    (
        Path(__file__).parent / "fixtures" / "image_references" / "distribution_reference_test.json"
    ).read_text()
)
#: Upstream's errors, by the message `parse` gives for each.
ERRORS = {
    "ErrNameEmpty": "repository name must have at least one component",
    "ErrReferenceInvalidFormat": "invalid reference format",
    "ErrNameContainsUppercase": "repository name must be lowercase",
    "ErrNameTooLong": "repository name must not be more than 255 characters",
    "ErrDigestInvalidLength": "invalid checksum digest length",
    "ErrDigestUnsupported": "unsupported digest algorithm",
}
DIGEST = "sha256:" + "ab" * 32


def _id(row: dict[str, Any]) -> str:
    return row["input"][:60] or "(empty)"


@pytest.mark.parametrize("row", VECTORS["TestReferenceParse"], ids=_id)
def test_distribution_reference_parse(row: dict[str, Any]) -> None:
    if "err" in row:
        with pytest.raises(InvalidReference) as raised:
            parse_reference(row["input"])
        assert str(raised.value) == ERRORS[row["err"]]
        return
    ref = parse_reference(row["input"])
    assert str(ref) == row["input"]
    assert (ref.name, ref.domain, ref.tag or "", ref.digest or "") == (
        row["repository"],
        row["domain"],
        row["tag"],
        row["digest"],
    )


@pytest.mark.parametrize("text", VECTORS["TestWithNameFailure"], ids=lambda t: t[:60])
def test_distribution_names_refused(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_reference(text)


@pytest.mark.parametrize("row", VECTORS["TestDomainAndPath"], ids=_id)
def test_distribution_domain_and_path(row: dict[str, Any]) -> None:
    ref = parse_reference(row["input"])
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (row["domain"], row["path"], None, None)


@pytest.mark.parametrize("row", VECTORS["TestParseNamed"], ids=_id)
def test_distribution_parse_named(row: dict[str, Any]) -> None:
    ref = parse_normalized(row["input"])
    if "err" in row:  # ErrNameNotCanonical: it parses, but not to itself
        assert row["err"] == "ErrNameNotCanonical"
        assert str(ref) != row["input"]
    else:
        assert str(ref) == row["input"]
        assert (ref.domain, ref.path) == (row["domain"], row["path"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", "docker.io/library/nginx"),
        ("nginx:1.25", "docker.io/library/nginx:1.25"),
        ("acme/app:1", "docker.io/acme/app:1"),
        ("docker.io/nginx", "docker.io/library/nginx"),
        ("index.docker.io/nginx", "docker.io/library/nginx"),
        ("Registry-1.Docker.io/acme/app", "docker.io/acme/app"),
        ("localhost:5000/x", "localhost:5000/x"),
        ("localhost/x", "localhost/x"),
        ("Host/x", "host/x"),
        (f"ghcr.io/a/b@{DIGEST}", f"ghcr.io/a/b@{DIGEST}"),
        (f"nginx:1@{DIGEST}", f"docker.io/library/nginx:1@{DIGEST}"),
    ],
)
def test_parse_normalized(text: str, expected: str) -> None:
    assert str(parse_normalized(text)) == expected


@pytest.mark.parametrize(
    "text",
    ["ab" * 32, "Nginx", "acme/App", "a.b_c/app", "nginx:", "a b", " nginx", "nginx@sha256:ab"],
)
def test_parse_normalized_refuses(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_normalized(text)


def test_tags_and_digests_are_ascii() -> None:
    for text in ("app:\u00e9t\u00e9", "app:\u0661", "app@sha256:" + "\u0661" * 64):
        with pytest.raises(InvalidReference):
            parse_reference(text)


def test_split_domain_without_defaults() -> None:
    assert split_domain("team-a/app") == ("", "team-a/app")
    assert split_domain("app") == ("", "app")
    assert split_domain("ghcr.io/team-a/app") == ("ghcr.io", "team-a/app")
    assert split_domain("localhost/app") == ("localhost", "app")
    assert split_domain("registry:5000/app") == ("registry:5000", "app")


@pytest.mark.parametrize(
    ("text", "host", "repository", "tag", "digest"),
    [
        ("registry.example:5000/team/app:1.0", "registry.example:5000", "team/app", "1.0", None),
        ("registry/app:1", "registry", "app", "1", None),  # the first component is the host
        (f"ghcr.io/acme/app@{DIGEST}", "ghcr.io", "acme/app", None, DIGEST),
        (f"ghcr.io/acme/app:v1@{DIGEST}", "ghcr.io", "acme/app", "v1", DIGEST),
    ],
)
def test_image_ref_as_operators_type_it(
    text: str, host: str, repository: str, tag: str | None, digest: str | None
) -> None:
    assert ImageRef.parse(text) == ImageRef(host, repository, tag, digest)


@pytest.mark.parametrize(
    "text",
    [
        "app:1",  # no host
        "ghcr.io/acme/app",  # no tag or digest
        "ghcr.io/Acme/app:1",
        "my_host/app:1",
        "ghcr.io/acme/app@sha512:" + "ab" * 64,  # the registry client asks for sha256
        "ghcr.io/acme/app@sha256:" + "AB" * 32,
        "ghcr.io/acme/app:\u00e9",
        "",
    ],
)
def test_image_ref_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not an image reference"):
        ImageRef.parse(text)


def test_a_megabyte_of_text_is_refused_before_the_patterns_read_it() -> None:
    from bot.images.reference import TEXT_MAX, InvalidReference, parse_reference

    with pytest.raises(InvalidReference, match=f"longer than {TEXT_MAX}"):
        parse_reference("a-" * 500_000 + "!")
