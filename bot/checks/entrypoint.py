"""Entrypoints that fetch and run code, open reverse shells or mine. Pure: facts in, findings out.

What is looked at, on every platform: the entrypoint and cmd joined with spaces into one
shell line (an `sh -c "…"` script is one argument, so it is read as written), and every env
value (the name is not read).

What is reported, one finding per kind and place (the command, or one env var) whatever the
number of platforms, the place and kind also being the finding's `package`:

* `download-and-execute` (HIGH): `curl`/`wget` piped into a shell, also through `sudo`, `env`
  or other pipeline stages (`curl -fsSL url | sudo bash`, `wget -qO- url | sh`), or into an
  interpreter reading stdin (`| python3 -`); `bash <(curl …)`, `. <(curl …)`;
  `sh -c "$(curl …)"` and `eval "$(wget …)"`. A download that is not piped into a shell
  (`curl -o file url`, `curl url | tar xz`, `curl url || sh fallback.sh`) is not reported.
* `decode-and-execute` (HIGH): `base64 -d`/`--decode` (also after `echo …|`) piped into a
  shell or interpreter, or run through `sh -c "$(…)"`, `eval`, or `<(…)`;
  `exec(base64.b64decode(` and `eval(base64_decode(`.
* `reverse-shell` (HIGH): an interactive shell on `/dev/tcp|udp/…` (`bash -i >& /dev/tcp/h/p
  0>&1`, `sh <&196 >&196`), `nc`/`ncat`/`netcat -e|-c <shell>` and `--sh-exec`, `socat … exec:`
  or `system:`, a named pipe (`mkfifo`/`mknod … p`) feeding `nc`/`telnet`/`openssl s_client`,
  `telnet … | sh | telnet …`, and python/perl/php/ruby one-liners that open a socket and hand
  it a shell (`socket` with `dup2`/`pty.spawn`, `Socket` with `exec`/`system`/`open(STDIN`,
  `fsockopen` with `exec`…, `TCPSocket` with `exec`/`spawn`). A plain `</dev/tcp/db/5432`
  wait-for-port probe is not reported.
* `miner` (CRITICAL): a known miner's name (see `MINERS`) as a whole word: a command, a path
  component or an argument, in any case, `xmrig-6.21`, `/opt/xmrig/xmrig` and `xmrig.json`
  included; the name inside a longer word (`dataminer`, `minerva`, `ethminers`) is not.
* `mining-pool` (CRITICAL): a `stratum+tcp://`, `stratum+ssl://`, `stratum+tls://` or
  `stratum2+tcp://` URL, or a well-known pool's host name (see `POOL_HOSTS`).

The matched fragment is quoted, whitespace collapsed and cut to 120 characters; credentials
(the shapes `secret-in-config` knows) are masked before matching, so none is ever quoted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from bot.checks.base import HygienePolicy
from bot.checks.secrets import redact
from bot.images.facts import ImageFacts
from bot.model.findings import Finding, Severity

CHECK_ID = "suspicious-entrypoint"
FRAGMENT_LIMIT = 120

MINERS = (
    "xmrig",
    "xmr-stak",
    "minerd",
    "cpuminer",
    "ccminer",
    "t-rex",
    "nbminer",
    "lolminer",
    "phoenixminer",
    "ethminer",
    "cgminer",
    "bfgminer",
    "kdevtmpfsi",
    "kinsing",
)
POOL_HOSTS = (
    "supportxmr.com",
    "moneroocean.stream",
    "minexmr.com",
    "nanopool.org",
    "2miners.com",
    "hashvault.pro",
    "herominers.com",
    "c3pool.com",
    "ethermine.org",
    "f2pool.com",
    "unmineable.com",
    "nicehash.com",
)

_COMPROMISED = (
    "If nobody on the team can explain it, treat the image as compromised: stop containers "
    "running it, block this digest, find who pushed it and how (base image, build dependency, "
    "stolen push credentials), rotate every credential it could reach, and rebuild from a "
    "reviewed Dockerfile on a trusted base."
)

# Building blocks. A pipe is `|` or `|&` but not `||`; a stage runs up to `;`, `&&`, `||`, EOL.
_PIPE = r"(?<!\|)\|(?!\|)&?\s*"
_STAGES = r"(?:(?!&&|\|\|)[^;\n]){0,500}?"
_PREFIX = r"(?:(?:sudo|doas)(?:\s+-\S+)*\s+)?(?:env(?:\s+-\S+)*(?:\s+\w+=\S*)*\s+)?"
_SHELL = r"(?:\S{0,200}/)?(?:bash|sh|dash|zsh|ksh|ash|busybox\s+sh)(?![\w.-])"
_STDIN_INTERP = r"(?:\S{0,200}/)?(?:python[0-9.]*|perl|ruby|node|php)(?:\s+-)?\s*(?=$|[;&|)\n\"'])"
_RUNNER = rf"(?:{_SHELL}|{_STDIN_INTERP})"
_SHELL_C = r"\b(?:bash|sh|dash|zsh|ksh|ash|python[0-9.]*|perl|ruby|node)\s+-[ce]"
_DOWNLOAD = r"\b(?:curl|wget|fetch)\b"
_DECODE = (
    r"(?:\b(?:echo|printf)\s+[^|;\n]{0,1000}\|\s*)?"
    r"(?:\bbase64(?:\s+-\S+)*?\s+(?:-[A-Za-z]*[dD][A-Za-z]*|--decode)\b"
    r"|\bopenssl\s+(?:base64|enc)\b[^|;\n]{0,200}?\s-d\b)"
)
_SUBST = r"(?:\$\(|`)"


def _rx(*patterns: str, flags: int = 0) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, flags) for p in patterns)


@dataclass(frozen=True)
class _Rule:
    kind: str
    title: str
    what: str
    severity: Severity
    patterns: tuple[re.Pattern[str], ...]
    remediation: str
    quote_word: bool = False  # quote the whole word or path the match sits in


_DEV_NET = r"/dev/(?:tcp|udp)/"
_ONE_LINER = r"[^\n]{0,110}"  # quote some of the one-liner, not just its interpreter
_NC = r"\b(?:nc|ncat|netcat|nc\.traditional|nc\.openbsd)\b"
_SEPARATOR = frozenset(" \t\n\r\"'`;|&()")
_MINER_WORD = "|".join(re.escape(m) for m in MINERS)
_POOL_HOST = "|".join(re.escape(h) for h in POOL_HOSTS)

_RULES: tuple[_Rule, ...] = (
    _Rule(
        "download-and-execute",
        "Entrypoint downloads code and runs it",
        "runs code downloaded at start-up",
        Severity.HIGH,
        _rx(
            rf"{_DOWNLOAD}{_STAGES}{_PIPE}{_PREFIX}{_RUNNER}",
            rf"(?:\b(?:bash|sh|dash|zsh|ksh|ash|source)|(?<![\w.])\.)\s+(?:-\S+\s+)*"
            rf"<\(\s*{_PREFIX}{_DOWNLOAD}[^)]{{0,500}}\)?",
            rf"(?:\beval|{_SHELL_C})\s+[\"']?{_SUBST}\s*{_PREFIX}{_DOWNLOAD}[^)`]{{0,500}}[)`]?",
        ),
        "Do not fetch and run code when the container starts: what runs then is whatever the "
        "server sends that day. Download the script at build time, pin it by checksum "
        "(`curl -o f URL && echo 'SHA256  f' | sha256sum -c`), review it, and rebuild. "
        + _COMPROMISED,
    ),
    _Rule(
        "decode-and-execute",
        "Entrypoint runs a hidden (base64-encoded) command",
        "runs a base64-encoded command",
        Severity.HIGH,
        _rx(
            rf"{_DECODE}{_STAGES}{_PIPE}{_PREFIX}{_RUNNER}",
            rf"(?:\beval|{_SHELL_C})\s+[\"']?{_SUBST}[^)`]{{0,500}}?{_DECODE}[^)`]{{0,500}}[)`]?",
            rf"(?:\b(?:bash|sh|dash|zsh|ksh|ash|source)|(?<![\w.])\.)\s+(?:-\S+\s+)*"
            rf"<\([^)]{{0,500}}?{_DECODE}[^)]{{0,500}}\)?",
            r"\bexec\s*\(\s*(?:__import__\(\s*[\"']base64[\"']\s*\)|base64)\.b64decode\b",
            r"\beval\s*\(\s*(?:gz\w+\s*\(\s*)?base64_decode\s*\(",
        ),
        "Encoded commands have no place in an entrypoint: decode the payload and review what it "
        "does. " + _COMPROMISED,
    ),
    _Rule(
        "reverse-shell",
        "Entrypoint opens a reverse shell",
        "hands a shell to a remote host",
        Severity.HIGH,
        _rx(
            rf"\b(?:bash|sh|dash|zsh|ksh|ash)\s+-i\b[^\n]{{0,80}}?"
            rf"{_DEV_NET}\S{{1,200}}[^;\n|]{{0,40}}",
            rf"{_DEV_NET}\S{{1,200}}[^\n]{{0,120}}?\b(?:bash|sh|dash|zsh|ksh|ash)\s+(?:-i\s+)?"
            r"[0-2]?[<>]&\s*\d+",
            rf"{_DEV_NET}\S{{1,200}}[^\n]{{0,120}}?\bdo\s+\$\w+\s[^\n]{{0,200}}?[<>]&",
            rf"{_NC}[^;|&\n]{{0,200}}?\s-(?:[A-Za-z]*[ec]|-exec)\s+[\"']?{_SHELL}[^;|&\n]{{0,60}}",
            rf"{_NC}[^;|&\n]{{0,200}}?\s--(?:sh|lua)-exec\b",
            r"\bsocat\b[^\n;]{0,300}?\b(?i:exec|system):\S{0,100}",
            rf"\b(?:mkfifo\s+\S+|mknod\s+\S+\s+p\b)[^\n]{{0,200}}?"
            rf"(?:{_NC}|\btelnet\b|\bopenssl\s+s_client\b)",
            rf"\btelnet\b[^\n|]{{0,200}}{_PIPE}{_SHELL}[^\n|]{{0,200}}{_PIPE}telnet\b",
            r"\bpython[0-9.]*\s+-c\b(?=[^\n]{0,2000}\bsocket\b)"
            r"(?=[^\n]{0,2000}(?:\bdup2\b|\bpty\.spawn\b))" + _ONE_LINER,
            r"\bperl\b[^\n]{0,200}?\s-\w*e\b(?=[^\n]{0,2000}\b(?i:socket)\b)"
            r"(?=[^\n]{0,2000}(?:\bexec\b|\bsystem\b|open\(\s*STD|fdopen))" + _ONE_LINER,
            r"\bphp\s+-r\b(?=[^\n]{0,2000}\bfsockopen\b)"
            r"(?=[^\n]{0,2000}\b(?:exec|shell_exec|system|passthru|popen|proc_open)\b)"
            + _ONE_LINER,
            r"\bruby\b[^\n]{0,200}?\s-\w*e\b(?=[^\n]{0,2000}\bTCPSocket\b)"
            r"(?=[^\n]{0,2000}\b(?:exec|spawn|system)\b)" + _ONE_LINER,
        ),
        "A reverse shell gives whoever listens at the other end a shell inside every container "
        "started from this image. " + _COMPROMISED,
    ),
    _Rule(
        "miner",
        "Cryptocurrency miner in the entrypoint",
        "runs a cryptocurrency miner",
        Severity.CRITICAL,
        _rx(rf"(?<![A-Za-z0-9])(?:{_MINER_WORD})(?![A-Za-z])", flags=re.I),
        "Miners are the usual payload of a hijacked image or build. " + _COMPROMISED,
        quote_word=True,
    ),
    _Rule(
        "mining-pool",
        "Mining pool address in the config",
        "points at a cryptocurrency mining pool",
        Severity.CRITICAL,
        _rx(
            r"\bstratum2?\+(?:tcp|ssl|tls)://[^\s\"']+",
            rf"(?<![\w.-])(?:[\w-]+\.)*(?:{_POOL_HOST})(?![\w-])(?::\d+)?",
            flags=re.I,
        ),
        "A mining pool address means something in this image mines for someone else. "
        + _COMPROMISED,
    ),
)


def fragment(text: str) -> str:
    """A matched fragment as quoted: one line of at most 120 characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= FRAGMENT_LIMIT else flat[: FRAGMENT_LIMIT - 1] + "…"


def _matches(rule: _Rule, text: str) -> list[str]:
    """The distinct fragments of `text` the rule matches, in order, none inside another."""
    found: dict[str, None] = {}
    covered = bytearray(len(text))  # a pool URL and the host name inside it are one match
    for pattern in rule.patterns:
        for m in pattern.finditer(text):
            start, end = m.span()
            if start == end or covered[start]:
                continue
            if rule.quote_word:
                while start > 0 and text[start - 1] not in _SEPARATOR:
                    start -= 1
                while end < len(text) and text[end] not in _SEPARATOR:
                    end += 1
            covered[start:end] = b"\x01" * (end - start)
            found[text[start:end]] = None
    return list(found)


def _texts(env: Iterable[str], argv: tuple[str, ...]) -> Iterator[tuple[str, str, str]]:
    """(place id, place as told, text) for one platform, credentials masked before matching.

    Masking first means that no fragment, however it is cut, can quote part of a secret.
    """
    if argv:
        yield "command", "entrypoint/cmd", redact(" ".join(argv))
    for entry in env:
        name, _, value = entry.partition("=")
        shown = " ".join(redact(name).split())[:100]
        yield f"env {shown}", f"env var `{shown}`", redact(value)


@dataclass
class _Seen:
    rule: _Rule
    where: str
    fragments: dict[str, None] = field(default_factory=dict)
    platforms: dict[str, None] = field(default_factory=dict)


def suspicious_entrypoint(facts: ImageFacts, policy: HygienePolicy) -> Iterable[Finding]:
    seen: dict[tuple[str, str], _Seen] = {}
    for p in facts.platforms:
        for place, where, text in _texts(p.env, p.entrypoint + p.cmd):
            for rule in _RULES:
                found = _matches(rule, text)
                if found:
                    s = seen.setdefault((place, rule.kind), _Seen(rule, where))
                    s.fragments.update(dict.fromkeys(found))
                    s.platforms[p.platform] = None
    every = len(facts.platforms)
    return [_finding(place, s, every) for (place, _), s in seen.items()]


def _finding(place: str, s: _Seen, every: int) -> Finding:
    first, *rest = list(s.fragments)
    quoted = "`" + fragment(first).replace("`", "'") + "`"
    more = f" (and {len(rest)} more)" if rest else ""
    if every == 1:
        on = next(iter(s.platforms))
    else:
        on = "every platform" if len(s.platforms) == every else ", ".join(s.platforms)
    return Finding(
        check_id=CHECK_ID,
        severity=s.rule.severity,
        title=s.rule.title,
        detail=f"The {s.where} {s.rule.what}: {quoted}{more} ({on}).",
        remediation=s.rule.remediation,
        package=f"{place} ({s.rule.kind})"[:200],
    )
