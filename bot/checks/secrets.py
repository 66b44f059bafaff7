"""Credentials baked into an image config. Pure: ImageFacts in, findings out.

Anyone who can pull an image can read its config, so a credential in `Env`, `Labels`,
`Entrypoint` or `Cmd` has leaked to everyone with pull access, and it stays in every copy
of the image after the tag has moved on.

What is looked at, on every platform:

* env entries `NAME=value`: the name, and the value against the name;
* labels: the key and the value, the value against the key;
* each entrypoint and cmd argument, including `NAME=value`, `--name=value`, `-Dname=value`
  and `"name": "value"` settings inside it (so inside `sh -c "…"` scripts too), and the
  argument after a `--password`-style flag.

What is reported:

* known credential shapes anywhere in those texts (see `_SHAPES`): private-key blocks, AWS
  access key ids and Google API keys (CRITICAL), GitHub, GitLab, Slack, Stripe and npm tokens
  and Slack webhook URLs (HIGH);
* an AWS secret access key (40 base64 characters) assigned to a name with `aws` and
  `secret` or `key` in it (CRITICAL);
* a password in a URL, `scheme://user:password@host`, and a credential in an
  `Authorization: Bearer|token|Basic …` header (HIGH);
* a value assigned to a secret-looking name (words like password, passwd, pwd, pass, secret,
  token, passphrase, credentials, or api/access/secret/private/… followed by key; matched
  case-insensitively on the name's words, so `trustStorePassword` and `DB_PASS` count and
  `GPG_KEY` does not) whose value looks like a real secret (HIGH).

A value looks like a real secret when it is at least 8 characters long, has at least 2.5 bits
per character of Shannon entropy (so repetitive fill such as `xxxxxxxx` or `abcabcab` is not
reported), and is not a placeholder: empty, a reference (`$VAR`, `${VAR}`, `$(cmd)`,
`{{ … }}`, `<…>`), a path (`/run/secrets/db`, `./x`, `~/x`), a plain URL, a boolean, a
well-known default or filler (`changeme`, `changeit`, `postgres`, `password`, `secret`, …)
or anything containing a filler marker (`changeme`, `example`, `placeholder`, `dummy`,
`redacted`, `your_…_here`…). Names that point at or describe a secret rather than hold it
(`*_FILE`, `*_PATH`, `*_URL`, `*_NAME`, `*_TTL`, `*_LENGTH`, `*_HASH`, …) are not read. The
AWS documentation's example keys (containing `EXAMPLE`) are not reported.

There is one finding per location (env var, label, argument position), whatever the number of
platforms that carry it; the location is also the finding's `package`, so that two locations
stay two findings. A value is only ever shown masked: its first four characters (only when it
is at least 16 characters long, so that short passwords do not give half of themselves away)
and its length.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from bot.checks.base import HygienePolicy
from bot.images.facts import ImageFacts
from bot.model.findings import Finding, Severity

CHECK_ID = "secret-in-config"

MIN_LENGTH = 8
"""A value assigned to a secret-looking name shorter than this is not reported."""
MIN_ENTROPY = 2.5
"""Bits per character of Shannon entropy below which a value is taken for filler."""
SHOW_PREFIX_FROM = 16
"""Values at least this long show their first four characters when masked; shorter, none."""

_LOCATION_LIMIT = 200  # Finding.package is stored in 255 characters
_SHOWN_HITS = 3  # per finding; a script full of secrets still makes a readable detail

REMEDIATION = (
    "Rotate this credential now: anyone who can pull the image can read it, and moving or "
    "deleting the tag does not take it back. Then pass it at run time instead (a mounted "
    "secret such as `/run/secrets/…`, or env injected from a secret store), remove it from the "
    "Dockerfile, build args and labels (use `RUN --mount=type=secret` if the build needs it), "
    "and rebuild and push the image."
)


@dataclass(frozen=True)
class _Shape:
    kind: str
    pattern: re.Pattern[str]
    severity: Severity


_END = r"(?![A-Za-z0-9])"
_SHAPES: tuple[_Shape, ...] = (
    _Shape(
        "private key",
        re.compile(
            r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
            r"(?:.{0,10000}?-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----)?",
            re.S,
        ),
        Severity.CRITICAL,
    ),
    _Shape(
        "AWS access key id",
        re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}" + _END),
        Severity.CRITICAL,
    ),
    _Shape(
        "Google API key",
        re.compile(r"(?<![A-Za-z0-9_-])AIza[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])"),
        Severity.CRITICAL,
    ),
    _Shape(
        "GitHub token",
        re.compile(
            r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,247})"
            + _END
        ),
        Severity.HIGH,
    ),
    _Shape(
        "GitLab token",
        re.compile(r"(?<![A-Za-z0-9])glpat-[A-Za-z0-9_-]{20,}"),
        Severity.HIGH,
    ),
    _Shape(
        "Slack token",
        re.compile(
            r"(?<![A-Za-z0-9])(?:xox[abprs]-[A-Za-z0-9-]{10,}|xapp-[0-9]-[A-Za-z0-9-]{10,})"
        ),
        Severity.HIGH,
    ),
    _Shape(
        "Slack webhook URL",
        re.compile(r"https?://hooks\.slack\.com/services/[A-Za-z0-9_]+/[A-Za-z0-9_]+/[A-Za-z0-9]+"),
        Severity.HIGH,
    ),
    _Shape(
        "Stripe live key",
        re.compile(r"(?<![A-Za-z0-9])(?:sk|rk)_live_[A-Za-z0-9]{16,}" + _END),
        Severity.HIGH,
    ),
    _Shape(
        "npm token",
        re.compile(r"(?<![A-Za-z0-9])npm_[A-Za-z0-9]{36}" + _END),
        Severity.HIGH,
    ),
)

_URL_PASSWORD = re.compile(
    r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,19}://[^\s:/@'\"]*:(?P<pw>[^\s@/'\"]+)@"
)
_AUTH_HEADER = re.compile(
    r"(?i)\bauthorization[\"']?\s*[:=]\s*[\"']?(?:bearer|token|basic)\s+(?P<pw>[^\s\"']+)"
)
_AWS_SECRET_VALUE = re.compile(r"[A-Za-z0-9/+]{40}")

# `NAME=value`, `--name=value`, `-Dname=value`, `"name": "value"`, `name: value`.
_ASSIGNMENT = re.compile(
    r"(?:^|(?<=[\s;&|(\"'{,]))(?:-D|--?)?[\"']?(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)[\"']?"
    r"[ \t]*(?:=|:[ \t]*)[ \t]*(?P<q>[\"']?)(?P<value>[^\s\"';&|,}]+)"
)
_FLAG = re.compile(r"--?(?P<name>[A-Za-z][A-Za-z0-9_.-]*)")

_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "secret",
        "token",
        "credential",
        "credentials",
        "apikey",
        "accesskey",
        "secretkey",
        "privatekey",
    }
)
_SECRET_ENDINGS = ("password", "passwd", "secret", "token", "apikey")
_KEY_PREFIXES = frozenset(
    {
        "api",
        "access",
        "secret",
        "private",
        "encryption",
        "signing",
        "master",
        "client",
        "auth",
        "app",
        "account",
        "storage",
        "shared",
        "hmac",
        "jwt",
        "session",
    }
)
# Names ending in these words point at or describe a secret; they do not hold one.
_NOT_A_VALUE = frozenset(
    {
        "file",
        "path",
        "dir",
        "directory",
        "location",
        "url",
        "uri",
        "endpoint",
        "host",
        "name",
        "type",
        "id",
        "length",
        "len",
        "size",
        "min",
        "max",
        "count",
        "ttl",
        "expiry",
        "expires",
        "expiration",
        "lifetime",
        "timeout",
        "header",
        "env",
        "enabled",
        "disabled",
        "required",
        "mode",
        "policy",
        "hash",
        "digest",
        "format",
        "version",
        "algorithm",
        "alg",
        "issuer",
        "audience",
        "scope",
        "provider",
        "backend",
        "prefix",
        "user",
        "username",
        "login",
    }
)
_PLACEHOLDERS = frozenset(
    {
        "changeme",
        "changeit",
        "password",
        "passw0rd",
        "password1",
        "password123",
        "secret",
        "mysecretpassword",
        "postgres",
        "mysql",
        "mariadb",
        "root",
        "admin",
        "administrator",
        "guest",
        "default",
        "test",
        "testing",
        "letmein",
        "qwerty",
        "12345678",
        "123456789",
        "1234567890",
        "none",
        "null",
        "nil",
        "undefined",
        "unset",
        "notset",
        "empty",
        "true",
        "false",
        "yes",
        "no",
        "on",
        "off",
        "enabled",
        "disabled",
        "todo",
        "fixme",
        "tbd",
    }
)
_PLACEHOLDER_MARKERS = (
    "changeme",
    "changeit",
    "replaceme",
    "replacewith",
    "placeholder",
    "example",
    "dummy",
    "redacted",
    "notasecret",
    "notarealsecret",
    "fillme",
    "insertyour",
    "enteryour",
    "yourpassword",
    "yoursecret",
    "yourtoken",
    "yourapikey",
    "yourkey",
    "xxxxxx",
)
_PLAIN_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s@]*")


def entropy(text: str) -> float:
    """Shannon entropy of the characters of `text`, in bits per character."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def mask(value: str) -> str:
    """`ghp_…(40 chars)`: never more of a secret than its first four characters."""
    shown = value[:4] if len(value) >= SHOW_PREFIX_FROM else ""
    return f"{shown}…({len(value)} chars)"


def redact(text: str) -> str:
    """`text` with every known credential shape, URL password and Authorization header masked."""
    spans = [m.span() for shape in _SHAPES for m in shape.pattern.finditer(text)]
    spans += [m.span("pw") for p in (_URL_PASSWORD, _AUTH_HEADER) for m in p.finditer(text)]
    out, at = [], 0
    for start, end in sorted(spans):  # one pass over the original, so nothing is masked twice
        if end > at:
            start = max(start, at)
            out += [text[at:start], mask(text[start:end])]
            at = end
    return "".join(out) + text[at:]


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def _secret_word(name: str) -> str | None:
    """What a name says it holds ("password", "token", "API key"…), or None."""
    words = _words(name)
    if not words or words[-1] in _NOT_A_VALUE:
        return None
    for i, word in enumerate(words):
        if word == "key" and i > 0 and words[i - 1] in _KEY_PREFIXES:
            prefix = words[i - 1]
            return f"{prefix.upper() if prefix in ('api', 'jwt', 'hmac') else prefix} key"
        if word in _SECRET_WORDS or word.endswith(_SECRET_ENDINGS):
            return _spoken(word)
    return None


def _spoken(word: str) -> str:
    if word in _SPOKEN:
        return _SPOKEN[word]
    return next((_SPOKEN.get(e, e) for e in _SECRET_ENDINGS if word.endswith(e)), word)


_SPOKEN = {
    "pwd": "password",
    "pass": "password",
    "passwd": "password",
    "credentials": "credential",
    "apikey": "API key",
    "accesskey": "access key",
    "secretkey": "secret key",
    "privatekey": "private key",
}


def _is_aws_name(name: str) -> bool:
    words = _words(name)
    return "aws" in words and ("secret" in words or "key" in words)


def is_placeholder(value: str) -> bool:
    """Empty, a reference, a path, a plain URL, a boolean, a default or filler."""
    s = value.strip().strip("'\"").strip()
    if not s or s.startswith(("$", "{{", "/", "./", "../", "~/")):
        return True
    if (s.startswith("<") and s.endswith(">")) or _PLAIN_URL.fullmatch(s):
        return True
    norm = re.sub(r"[^a-z0-9]", "", s.lower())
    if len(set(norm)) <= 1 or norm in _PLACEHOLDERS:
        return True
    return any(marker in norm for marker in _PLACEHOLDER_MARKERS)


def looks_secret(value: str) -> bool:
    """Long and varied enough to be a real secret, and no placeholder."""
    s = value.strip().strip("'\"").strip()
    return len(s) >= MIN_LENGTH and entropy(s) >= MIN_ENTROPY and not is_placeholder(s)


@dataclass(frozen=True)
class _Hit:
    kind: str
    severity: Severity
    masked: str
    setting: str | None = None  # the name inside the text that held it, when not the location's


def _shape_hits(text: str) -> Iterator[_Hit]:
    for shape in _SHAPES:
        for m in shape.pattern.finditer(text):
            if "EXAMPLE" not in m.group(0):
                yield _Hit(shape.kind, shape.severity, mask(m.group(0)))
    for m in _URL_PASSWORD.finditer(text):
        if looks_secret(m["pw"]):
            yield _Hit("password in a URL", Severity.HIGH, mask(m["pw"]))
    for m in _AUTH_HEADER.finditer(text):
        if looks_secret(m["pw"]) and not _has_known_shape(m["pw"]):
            yield _Hit("credential in an Authorization header", Severity.HIGH, mask(m["pw"]))


def _named_hit(name: str, value: str, setting: str | None = None) -> _Hit | None:
    """A value judged by the name it is assigned to."""
    value = value.strip().strip("'\"").strip()
    if _is_aws_name(name) and _AWS_SECRET_VALUE.fullmatch(value) and "EXAMPLE" not in value:
        return _Hit("AWS secret access key", Severity.CRITICAL, mask(value), setting)
    word = _secret_word(name)
    if word is None or not looks_secret(value):
        return None
    return _Hit(f"hard-coded {word}", Severity.HIGH, mask(value), setting)


def _has_known_shape(text: str) -> bool:
    return any(s.pattern.search(text) for s in _SHAPES)


def _has_shape(text: str) -> bool:
    return _has_known_shape(text) or any(p.search(text) for p in (_URL_PASSWORD, _AUTH_HEADER))


def _text_hits(text: str, name: str | None) -> list[_Hit]:
    """Everything secret in one value (assigned to `name`, if any)."""
    hits = list(_shape_hits(text))
    if name is not None and not _has_shape(text):
        named = _named_hit(name, text)
        if named is not None:
            hits.append(named)
    for m in _ASSIGNMENT.finditer(text):
        if _has_shape(m["value"]):
            continue  # already reported by its shape
        inner = _named_hit(m["name"], m["value"], setting=redact(m["name"]))
        if inner is not None:
            hits.append(inner)
    return hits


@dataclass
class _Place:
    where: str
    hits: dict[_Hit, None] = field(default_factory=dict)
    platforms: dict[str, None] = field(default_factory=dict)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _platform_hits(
    p_env: Iterable[str],
    labels: Iterable[tuple[str, str]],
    argv: Iterable[tuple[str, tuple[str, ...]]],
) -> Iterator[tuple[str, str, list[_Hit]]]:
    """(location, human description of where, hits) for one platform's config."""
    for entry in p_env:
        name, _, value = entry.partition("=")
        shown = _clip(redact(name), 100)
        hits = [_Hit(f"{h.kind} in the name", h.severity, h.masked) for h in _shape_hits(name)]
        yield f"env {shown}", f"env var `{shown}`", hits + _text_hits(value, name)
    for key, value in labels:
        shown = _clip(redact(key), 100)
        hits = [_Hit(f"{h.kind} in the key", h.severity, h.masked) for h in _shape_hits(key)]
        yield f"label {shown}", f"label `{shown}`", hits + _text_hits(value, key)
    for part, args in argv:
        for i, arg in enumerate(args):
            flag = _FLAG.fullmatch(args[i - 1]) if i > 0 else None
            flag_name = str(flag["name"]) if flag and not arg.startswith("-") else None
            if flag_name is not None and _secret_word(flag_name) is None:
                flag_name = None
            where = f"{part}[{i}]"
            if flag_name:
                where += f" (value of `{_clip(redact(args[i - 1]), 60)}`)"
            yield f"{part}[{i}]", f"argument {where}", _text_hits(arg, flag_name)


def secret_in_config(facts: ImageFacts, policy: HygienePolicy) -> Iterable[Finding]:
    places: dict[str, _Place] = {}
    for p in facts.platforms:
        argv = (("entrypoint", p.entrypoint), ("cmd", p.cmd))
        for location, where, hits in _platform_hits(p.env, p.labels, argv):
            if not hits:
                continue
            place = places.setdefault(location, _Place(where))
            place.hits.update(dict.fromkeys(hits))
            place.platforms[p.platform] = None
    every = len(facts.platforms)
    return [_finding(location, place, every) for location, place in places.items()]


def _finding(location: str, place: _Place, every: int) -> Finding:
    hits = sorted(place.hits, key=lambda h: -h.severity.rank)
    worst = hits[0]
    what = "; ".join(_describe(h) for h in hits[:_SHOWN_HITS])
    if len(hits) > _SHOWN_HITS:
        what += f"; and {len(hits) - _SHOWN_HITS} more"
    if every > 1 and len(place.platforms) == every:
        on = "every platform"
    else:
        on = ", ".join(place.platforms)
    return Finding(
        check_id=CHECK_ID,
        severity=worst.severity,
        title=f"{worst.kind[0].upper()}{worst.kind[1:]} in the image config",
        detail=f"The {place.where} holds {what} ({on}).",
        remediation=REMEDIATION,
        package=_clip(location, _LOCATION_LIMIT),
    )


def _describe(hit: _Hit) -> str:
    article = "an" if hit.kind[0] in "aeiouAEIOU" or hit.kind.startswith("npm") else "a"
    text = f"{article} {hit.kind}"
    if hit.setting:
        text += f" in setting `{_clip(hit.setting, 60)}`"
    return f"{text} `{hit.masked}`"
