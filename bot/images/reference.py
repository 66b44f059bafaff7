"""Image references (`registry:5000/team/app:1.2@sha256:…`): the one parser the bot uses.

It follows the grammar of the distribution project's `reference` package (the one container
runtimes use), so a string means here what it means to the runtime that pulls it:

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path-component [ "/" path-component ]*
    domain     := host [ ":" port ]        host: DNS-like components, IPv4, or [IPv6] (no zone)
    path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" hex{32,}
    algorithm  := [A-Za-z][A-Za-z0-9]* ( [-_+.] [A-Za-z][A-Za-z0-9]* )*

`parse_reference` is upstream's `Parse`: `domain` is the first component when it fits the
domain grammar and more components follow (`team/app` has domain `team`), as written. A name is
at most 255 characters. A digest must use an algorithm go-digest knows (`sha256`, `sha384`,
`sha512`) with that algorithm's number of hex digits; their case is not checked here (the
grammar allows upper-case hex; callers that need a canonical digest check it themselves).

`parse_normalized` is upstream's `ParseNormalizedNamed`, the way a runtime resolves what a pod
names: the first component is a registry only when it has a `.` or `:`, is `localhost`, or has
upper case; otherwise the image is on Docker Hub (`docker.io`), and a single-component Docker Hub
name is under `library/` (`nginx` is `docker.io/library/nginx`). Two additions: the registry is
lower-cased (host names are case-insensitive), and `registry-1.docker.io` (Docker Hub's actual
host) counts as `docker.io` as `index.docker.io` does upstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME_MAX = 255
#: Longer text is refused before any pattern reads it (a valid reference is under 600:
#: name, tag and a sha512 digest); pod specs and commands can carry megabytes.
TEXT_MAX = 1024
DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_OFFICIAL = "library/"

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

# re.ASCII: `\d` and friends are not used, but keep every class to ASCII all the same.
_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_REMOTE_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?",
    re.ASCII,
)
_NAME = re.compile(rf"(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_REMOTE_NAME})", re.ASCII)
_IDENTIFIER = re.compile(r"[a-f0-9]{64}", re.ASCII)
#: Hex digits of each digest algorithm go-digest knows.
_DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}


class InvalidReference(ValueError):
    """Not an image reference; the message says why, in the words of upstream's errors."""


@dataclass(frozen=True)
class Reference:
    """A parsed image reference. `domain` is "" when the name has none."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The repository name, domain included: `ghcr.io/acme/app`."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return f"{self.name}{tag}{digest}"


def parse_reference(text: str) -> Reference:
    """`text` as a reference, as upstream's `Parse`; raises `InvalidReference`."""
    if not text:
        raise InvalidReference("repository name must have at least one component")
    if len(text) > TEXT_MAX:  # before the patterns: they cost about 0.2 s a megabyte
        raise InvalidReference(f"reference longer than {TEXT_MAX} characters")
    m = _REFERENCE.fullmatch(text)
    if m is None:
        if text.lower() != text and _REFERENCE.fullmatch(text.lower()) is not None:
            raise InvalidReference("repository name must be lowercase")
        raise InvalidReference("invalid reference format")
    name = m["name"]
    if len(name) > NAME_MAX:
        raise InvalidReference(f"repository name must not be more than {NAME_MAX} characters")
    digest = m["digest"]
    if digest is not None:
        algorithm, _, hex_digits = digest.partition(":")
        if algorithm not in _DIGEST_HEX:
            raise InvalidReference("unsupported digest algorithm")
        if len(hex_digits) != _DIGEST_HEX[algorithm]:
            raise InvalidReference("invalid checksum digest length")
    n = _NAME.fullmatch(name)
    assert n is not None  # the reference pattern matched this name already
    return Reference(n["domain"] or "", n["path"], m["tag"], digest)


def split_domain(name: str) -> tuple[str, str]:
    """(registry, rest) of a name the way a runtime reads it, without defaults: the first
    component is a registry only when it has a `.` or `:`, is `localhost` or has upper case;
    otherwise the registry is "" (`team/app` -> ("", "team/app"))."""
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        return first, rest
    return "", name


def normalize_registry(host: str) -> str:
    """A registry host as `parse_normalized` names it: lower case, Docker Hub's aliases as
    `docker.io`."""
    host = host.lower()
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


def parse_normalized(text: str) -> Reference:
    """`text` as a fully qualified reference, as upstream's `ParseNormalizedNamed` (plus a
    lower-cased registry and `registry-1.docker.io` as Docker Hub): `nginx:1.27` ->
    `docker.io/library/nginx:1.27`; raises `InvalidReference`."""
    if _IDENTIFIER.fullmatch(text):
        raise InvalidReference("cannot specify 64-byte hexadecimal strings as a repository name")
    registry, rest = split_domain(text)
    registry = normalize_registry(registry or DOCKER_HUB)
    if registry == DOCKER_HUB and "/" not in rest:  # a tag or digest never holds a "/"
        rest = _OFFICIAL + rest
    remote = rest.partition(":")[0]
    if remote.lower() != remote:
        raise InvalidReference("repository name must be lowercase")
    ref = parse_reference(f"{registry}/{rest}")
    if ref.domain != registry:  # `a.b_c/app`: read as a registry, but not one by the grammar
        raise InvalidReference("invalid reference format")
    return ref
