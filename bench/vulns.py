"""OSV advisories at scale: importing 100,000 into SQLite, then matching a 2,000-package inventory.

Goals: `import_records` stores 100,000 advisories in a fresh SQLite database in under 60 s, and
`Vulnerabilities.matches` for 2,000 packages (the store's generation read from the database,
then each vulnerable package's vulnerabilities, fixed versions and severities) takes under
100 ms once loaded. "Once loaded" is a later call on the same `Vulnerabilities`, which keeps
each package name's advisories compiled into a table (bot/vulns/table.py) until an import
changes the store: the same inventory again, where every version meets a cell of its table
whose answer is already worked out, and the same names at other versions, where most meet a
new cell. `findings()`, the match turned into the pipeline's `Finding`s (title, detail and
remediation texts for each of up to 17,815), is printed beside it without a goal: that is
the pipeline's work on the answer, like storing it, not matching. The first call, on a fresh
engine with the version caches cleared, is printed as the cold figure, and its parts measured
apart (SQL, `parse_record`, compiling the tables, matching on fresh tables), so the figures
show where the time goes.

The advisories are generated deterministically (seeded `random`) in the shapes OSV publishes:
DEBIAN-CVE / DSA / DLA records with one affected entry per release (`Debian:11`…`Debian:13`),
Alpine ones per `Alpine:v3.18`…`v3.20`, GHSA and PYSEC for PyPI (ECOSYSTEM ranges plus the
`versions` list, some GIT ranges), GHSA for npm (SEMVER, some with two introduced/fixed pairs)
and Maven (some naming two artifacts), GO records with GHSA twins for Go (SEMVER); fixed and
last_affected bounds, unfixed records, a few withdrawn ones, CVSS v3 (and some v4) vectors.
Advisories fall on package names with a Zipf skew, so popular packages carry hundreds. The
inventory mixes popular and long-tail names, at the newest release, at exactly a version an
advisory names as fixed, or at an older release; a check confirms no advisory is reported
against a package installed at its fixed version. Absolute times drift on a shared 2-core
machine: the breakdown lines, measured in the same run, are the baseline to compare against.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import io
import itertools
import pstats
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import Database as DatabaseSettings  # noqa: E402
from bot.store.db import Database, migrate  # noqa: E402
from bot.vulns import osv  # noqa: E402
from bot.vulns import store as advisories  # noqa: E402
from bot.vulns.match import (  # noqa: E402
    Package,
    VulnFinding,
    compile_index,
    match_compiled,
    to_findings,
)
from bot.vulns.models import Advisory, AdvisoryPackage  # noqa: E402
from bot.vulns.osv import OsvRecord, normalize_name, parse_record  # noqa: E402
from bot.vulns.service import FREEZE_AFTER, Vulnerabilities  # noqa: E402
from bot.vulns.store import ImportResult  # noqa: E402
from bot.vulns.versions import base_ecosystem  # noqa: E402

SEED = 20261202
TOTAL = 200_000
TIMED = 100_000
IMPORT_GOAL_S = 60.0
MATCH_GOAL_MS = 100.0


@dataclass(frozen=True)
class Eco:
    name: str  # OSV's base ecosystem
    advisories: int  # records generated
    names: int  # size of the package-name universe
    skew: float  # Zipf exponent: how unevenly advisories fall on names
    installed: int  # packages of this ecosystem in the inventory


ECOSYSTEMS = (
    Eco("Debian", 60_000, 4_000, 0.9, 450),
    Eco("Alpine", 25_000, 2_500, 0.9, 150),
    Eco("PyPI", 30_000, 10_000, 0.8, 400),
    Eco("npm", 40_000, 20_000, 0.8, 600),
    Eco("Maven", 25_000, 8_000, 0.8, 250),
    Eco("Go", 20_000, 6_000, 0.8, 150),
)
DEBIAN_RELEASES = ("11", "12", "13")
ALPINE_RELEASES = ("v3.18", "v3.19", "v3.20")
#: The release the inventory runs on.
DEBIAN_INSTALLED, ALPINE_INSTALLED = "12", "v3.19"

#: The most-advised names of each ecosystem, real ones first; synthetic names follow.
TOP_NAMES = {
    "Debian": [
        "linux",
        "chromium",
        "firefox-esr",
        "thunderbird",
        "qemu",
        "imagemagick",
        "openjdk-17",
        "php8.2",
        "glibc",
        "openssl",
        "curl",
        "systemd",
        "perl",
        "vim",
        "python3.11",
        "libxml2",
        "tiff",
        "git",
        "openssh",
        "gnutls28",
        "krb5",
        "sqlite3",
        "expat",
        "zlib",
        "ncurses",
        "libx11",
        "nghttp2",
        "busybox",
    ],
    "Alpine": [
        "chromium",
        "linux-lts",
        "xen",
        "imagemagick",
        "openssl",
        "curl",
        "busybox",
        "musl",
        "libxml2",
        "sqlite",
        "expat",
        "zlib",
        "openssh",
        "nghttp2",
    ],
    "PyPI": [
        "tensorflow",
        "Pillow",
        "django",
        "jinja2",
        "urllib3",
        "requests",
        "cryptography",
        "PyYAML",
        "Werkzeug",
        "aiohttp",
        "setuptools",
        "lxml",
        "paramiko",
        "flask",
    ],
    "npm": [
        "lodash",
        "minimist",
        "node-fetch",
        "axios",
        "express",
        "ws",
        "semver",
        "tar",
        "@babel/traverse",
        "jsonwebtoken",
        "moment",
        "handlebars",
        "qs",
        "undici",
    ],
    "Maven": [
        "com.fasterxml.jackson.core:jackson-databind",
        "org.apache.logging.log4j:log4j-core",
        "org.springframework:spring-web",
        "org.apache.tomcat.embed:tomcat-embed-core",
        "io.netty:netty-codec-http",
        "org.yaml:snakeyaml",
        "com.google.guava:guava",
    ],
    "Go": [
        "stdlib",
        "golang.org/x/net",
        "golang.org/x/crypto",
        "github.com/docker/docker",
        "google.golang.org/grpc",
        "k8s.io/kubernetes",
        "github.com/containerd/containerd",
        "github.com/opencontainers/runc",
        "golang.org/x/text",
    ],
}
#: Top names that never run in a container image: left out of the inventory.
NOT_IN_IMAGES = {"linux", "chromium", "firefox-esr", "thunderbird", "qemu", "linux-lts", "xen"}

SYLLABLES = (
    "ac",
    "bel",
    "cor",
    "dan",
    "el",
    "fur",
    "gra",
    "hex",
    "io",
    "jin",
    "kar",
    "lum",
    "mor",
    "nex",
    "or",
    "pix",
    "quo",
    "ras",
    "sol",
    "tor",
    "ul",
    "vex",
    "wyn",
    "xil",
    "yar",
    "zen",
)
WORDS = (
    "a",
    "crafted",
    "request",
    "header",
    "buffer",
    "overflow",
    "allows",
    "remote",
    "attackers",
    "to",
    "cause",
    "denial",
    "of",
    "service",
    "via",
    "malformed",
    "input",
    "in",
    "the",
    "parser",
    "when",
    "processing",
    "untrusted",
    "data",
    "leading",
    "memory",
    "corruption",
    "and",
    "possibly",
    "arbitrary",
    "code",
    "execution",
    "path",
    "traversal",
    "certificate",
    "check",
)
GHSA_ALPHABET = "23456789cfghjmpqrvwx"
CWES = ("CWE-20", "CWE-22", "CWE-79", "CWE-125", "CWE-200", "CWE-400", "CWE-502", "CWE-787")


# --- names and versions ---------------------------------------------------------------------


def _word(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts))


def make_names(eco: Eco, rng: random.Random) -> list[str]:
    """The universe of package names, most-advised first."""
    names = list(TOP_NAMES[eco.name])
    for i in range(eco.names - len(names)):
        a, b = _word(rng, 2), _word(rng, rng.randint(1, 2))
        if eco.name in ("Debian", "Alpine"):
            names.append(f"lib{a}-{i}" if rng.random() < 0.3 else f"{a}{b}-{i}")
        elif eco.name == "PyPI":  # some spelled as PEP 503 normalises them away
            names.append(f"{a.capitalize()}_{b}.{i}" if rng.random() < 0.2 else f"{a}-{b}{i}")
        elif eco.name == "npm":
            names.append(f"@{a}/{b}-{i}" if rng.random() < 0.3 else f"{a}-{b}{i}")
        elif eco.name == "Maven":
            names.append(f"{rng.choice(('org', 'com', 'io'))}.{a}.{b}:{b}-{_word(rng, 1)}{i}")
        else:
            host = rng.choice(("github.com", "github.com", "gitlab.com", "go.etcd.io"))
            names.append(f"{host}/{a}/{b}{i}")
    return names


def _upstream(rng: random.Random) -> list[tuple[str, bool]]:
    """An increasing list of upstream releases, each flagged when a pre-release preceded it."""
    major, minor, patch = rng.randint(0, 4), rng.randint(0, 12), rng.randint(0, 5)
    two_part = rng.random() < 0.1
    out = []
    for _ in range(rng.randint(15, 40)):
        r = rng.random()
        if r < 0.05:
            major, minor, patch = major + 1, 0, 0
        elif r < 0.3 or two_part:
            minor, patch = minor + 1, 0
        else:
            patch += 1
        text = f"{major}.{minor}" if two_part else f"{major}.{minor}.{patch}"
        out.append((text, patch == 0 and rng.random() < 0.3))
    return out


@functools.cache
def releases(eco: str, name: str, release: str = "") -> tuple[str, ...]:
    """The package's versions in the ecosystem's own order (per release for OS ecosystems)."""
    rng = random.Random(f"{SEED}/{eco}/{name}")
    ups = _upstream(rng)
    out: list[str] = []
    if eco == "Debian":
        epoch = "1:" if rng.random() < 0.1 else ""
        dfsg = "+dfsg" if rng.random() < 0.1 else ""
        per_release = random.Random(f"{SEED}/{eco}/{name}/{release}")
        for up, _ in ups:
            out.append(f"{epoch}{up}{dfsg}-1")
            if per_release.random() < 0.35:
                out.append(f"{epoch}{up}{dfsg}-1+deb{release}u1")
                if per_release.random() < 0.3:
                    out.append(f"{epoch}{up}{dfsg}-1+deb{release}u2")
    elif eco == "Alpine":
        for up, _ in ups:
            out += [f"{up}-r{k}" for k in range(rng.randint(1, 3))]
    elif eco in ("PyPI", "npm"):
        for up, pre in ups:
            if pre:
                out.append(f"{up}rc1" if eco == "PyPI" else f"{up}-beta.1")
            out.append(up)
    elif eco == "Maven":
        suffix = rng.choices(("", ".Final", "-jre"), (85, 10, 5))[0]
        out = [f"{up}{suffix}" for up, _ in ups]
    else:  # Go: OSV's SEMVER ranges carry no "v"; the module's own version has one
        out = [up for up, _ in ups]
    return tuple(out)


# --- advisories -----------------------------------------------------------------------------


class Generator:
    """OSV records as dicts, in a fixed order for a given seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.names = {e.name: make_names(e, self.rng) for e in ECOSYSTEMS}
        self.weights = {
            e.name: list(itertools.accumulate(1 / (r + 1) ** e.skew for r in range(e.names)))
            for e in ECOSYSTEMS
        }
        self.schedule = [e.name for e in ECOSYSTEMS for _ in range(e.advisories)]
        self.rng.shuffle(self.schedule)  # every slice of the stream is a realistic mix
        self.position = 0
        self.cve = itertools.count(10_000)
        self.serial = itertools.count(1)
        #: Twins (PYSEC of a GHSA, GHSA of a GO record) waiting for a later slot.
        self.twins: dict[str, list[dict[str, Any]]] = defaultdict(list)
        #: (target ecosystem, name) → fixed version → advisory ids fixed there.
        self.fixes: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(
            lambda: defaultdict(set)
        )
        self.generated: Counter[str] = Counter()

    def take(self, n: int) -> Iterator[dict[str, Any]]:
        for eco in self.schedule[self.position : self.position + n]:
            self.position += 1
            self.generated[eco] += 1
            twins = self.twins[eco]
            if twins and self.rng.random() < 0.5:
                yield twins.pop()
            else:
                yield getattr(self, f"_{eco.lower()}")()

    # common pieces

    def pick_name(self, eco: str) -> str:
        return self.rng.choices(self.names[eco], cum_weights=self.weights[eco])[0]

    def new_cve(self) -> tuple[int, str]:
        year = self.rng.randint(2015, 2026)
        return year, f"CVE-{year}-{next(self.cve)}"

    def ghsa(self) -> str:
        return "GHSA-" + "-".join(
            "".join(self.rng.choice(GHSA_ALPHABET) for _ in range(4)) for _ in range(3)
        )

    def dates(self, year: int) -> dict[str, str]:
        rng = self.rng
        published = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        modified = (
            f"{min(year + rng.randint(0, 2), 2026)}-{rng.randint(1, 12):02d}-"
            f"{rng.randint(1, 28):02d}"
        )
        clock = f"T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
        return {"published": published + clock, "modified": max(modified, published) + clock}

    def text(self, sentences: int) -> str:
        rng = self.rng
        return " ".join(
            " ".join(rng.choices(WORDS, k=rng.randint(8, 20))).capitalize() + "."
            for _ in range(sentences)
        )

    def cvss(self) -> list[dict[str, str]]:
        rng = self.rng
        pick = rng.choice
        v3 = (
            f"CVSS:{pick(('3.1', '3.1', '3.1', '3.0'))}/AV:{pick('NNNALP')}"
            f"/AC:{pick('LLH')}/PR:{pick('NNLH')}/UI:{pick('NNR')}/S:{pick('UUC')}"
            f"/C:{pick('NLHH')}/I:{pick('NLHH')}/A:{pick('NLHH')}"
        )
        out = [{"type": "CVSS_V3", "score": v3}]
        if rng.random() < 0.1:
            out.append(
                {
                    "type": "CVSS_V4",
                    "score": (
                        f"CVSS:4.0/AV:{pick('NNAL')}/AC:{pick('LH')}/AT:{pick('NP')}/PR:{pick('NLH')}"
                        f"/UI:{pick('NPA')}/VC:{pick('NLH')}/VI:{pick('NLH')}/VA:{pick('NLH')}"
                        f"/SC:N/SI:N/SA:N"
                    ),
                }
            )
        return out

    def bounds(self, versions: Sequence[str]) -> tuple[int, int]:
        """Indices (introduced, fixed) into a release list, introduced < fixed."""
        j = self.rng.randrange(1, len(versions))
        i = 0 if self.rng.random() < 0.5 else self.rng.randrange(0, j)
        return i, j

    def events(
        self, versions: Sequence[str], target: str, name: str, vid: str, *, pairs: int = 1
    ) -> tuple[list[dict[str, str]], list[str]]:
        """Range events and the versions they cover, recording each fix for the inventory."""
        rng = self.rng
        kind = rng.random()
        cuts = sorted(rng.sample(range(1, len(versions)), min(2 * pairs - 1, len(versions) - 1)))
        if pairs > 1 and len(cuts) == 3:
            a, b, c = cuts
            evs = [
                {"introduced": "0"},
                {"fixed": versions[a]},
                {"introduced": versions[b]},
                {"fixed": versions[c]},
            ]
            for v in (versions[a], versions[c]):
                self.fixes[(target, name)][v].add(vid)
            return evs, [*versions[:a], *versions[b:c]]
        i, j = self.bounds(versions)
        start = {"introduced": "0" if i == 0 else versions[i]}
        if kind < 0.08:  # no fix yet
            return [start], list(versions[i:])
        if kind < 0.18:
            return [start, {"last_affected": versions[j]}], list(versions[i : j + 1])
        self.fixes[(target, name)][versions[j]].add(vid)
        return [start, {"fixed": versions[j]}], list(versions[i:j])

    def ghsa_specific(self, reviewed: bool = True) -> dict[str, Any]:
        return {
            "severity": self.rng.choice(("LOW", "MODERATE", "HIGH", "CRITICAL")),
            "cwe_ids": self.rng.sample(CWES, self.rng.randint(0, 2)),
            "github_reviewed": reviewed,
        }

    def references(self, vid: str, cve: str) -> list[dict[str, str]]:
        return [
            {"type": "ADVISORY", "url": f"https://nvd.nist.gov/vuln/detail/{cve}"},
            {"type": "WEB", "url": f"https://example.org/security/{vid}"},
        ]

    # per ecosystem

    def _debian(self) -> dict[str, Any]:
        rng = self.rng
        name = self.pick_name("Debian")
        year, cve = self.new_cve()
        kind = rng.random()
        if kind < 0.15:
            vid = f"{rng.choice(('DSA', 'DLA'))}-{next(self.serial)}-1"
            chosen = ["12"] if vid.startswith("DSA") else ["11"]
            summary: str | None = f"{name} - security update"
        else:
            vid = f"DEBIAN-{cve}"
            chosen = [r for r in DEBIAN_RELEASES if r != "12" and rng.random() < 0.6]
            if rng.random() < 0.85 or not chosen:
                chosen.append("12")
            summary = None  # Debian's records carry details only
        affected = []
        for release in sorted(chosen):
            versions = releases("Debian", name, release)
            eco = f"Debian:{release}"
            if vid.startswith("DEBIAN") and rng.random() < 0.15:
                events = [{"introduced": "0"}]  # unfixed in this release
            else:
                j = rng.randrange(1, len(versions))
                events = [{"introduced": "0"}, {"fixed": versions[j]}]
                self.fixes[(eco, name)][versions[j]].add(vid)
            affected.append(
                {
                    "package": {
                        "ecosystem": eco,
                        "name": name,
                        "purl": f"pkg:deb/debian/{name}?arch=source",
                    },
                    "ranges": [{"type": "ECOSYSTEM", "events": events}],
                    "ecosystem_specific": {"urgency": rng.choice(("low", "medium", "not yet"))},
                    "database_specific": {"source": f"https://security-tracker.debian.org/{vid}"},
                }
            )
        record: dict[str, Any] = {
            "schema_version": "1.6.0",
            "id": vid,
            **self.dates(year),
            "upstream": [cve],
            "details": self.text(rng.randint(1, 3)),
            "affected": affected,
        }
        if summary:
            record["summary"] = summary
        if rng.random() < 0.2:
            record["severity"] = self.cvss()[:1]
        return record

    def _alpine(self) -> dict[str, Any]:
        rng = self.rng
        name = self.pick_name("Alpine")
        year, cve = self.new_cve()
        vid = f"ALPINE-{cve}"
        versions = releases("Alpine", name)
        chosen = [r for r in ALPINE_RELEASES if rng.random() < 0.6] or [ALPINE_INSTALLED]
        j = rng.randrange(len(chosen), len(versions))
        affected = []
        for n, release in enumerate(chosen):
            eco = f"Alpine:{release}"
            fixed = versions[max(j - (len(chosen) - 1 - n), 1)]  # older releases fixed lower
            self.fixes[(eco, name)][fixed].add(vid)
            affected.append(
                {
                    "package": {
                        "ecosystem": eco,
                        "name": name,
                        "purl": f"pkg:apk/alpine/{name}?arch=source",
                    },
                    "ranges": [
                        {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}
                    ],
                }
            )
        return {
            "schema_version": "1.6.0",
            "id": vid,
            **self.dates(year),
            "upstream": [cve],
            "details": self.text(1),
            "affected": affected,
        }

    def _language(self, eco: str, range_type: str, purl: str) -> dict[str, Any]:
        rng = self.rng
        name = self.pick_name(eco)
        year, cve = self.new_cve()
        vid = self.ghsa()
        versions = releases(eco, name)
        target = eco
        pairs = 2 if eco == "npm" and rng.random() < 0.15 else 1
        events, hit = self.events(versions, target, name, vid, pairs=pairs)
        entry: dict[str, Any] = {
            "package": {"ecosystem": eco, "name": name, "purl": f"pkg:{purl}/{name}"},
            "ranges": [{"type": range_type, "events": events}],
            "database_specific": {"source": "https://github.com/github/advisory-database"},
        }
        if eco == "PyPI":
            entry["versions"] = hit
            if rng.random() < 0.2:
                sha = [f"{rng.getrandbits(160):040x}" for _ in range(2)]
                entry["ranges"].append(
                    {
                        "type": "GIT",
                        "repo": f"https://github.com/x/{name}",
                        "events": [{"introduced": sha[0]}, {"fixed": sha[1]}],
                    }
                )
        affected = [entry]
        if eco == "Maven" and rng.random() < 0.15:  # a sibling artifact of the same project
            sibling = self.names[eco][(self.names[eco].index(name) + 1) % len(self.names[eco])]
            sib_events, _ = self.events(releases(eco, sibling), target, sibling, vid)
            affected.append(
                {
                    "package": {"ecosystem": eco, "name": sibling},
                    "ranges": [{"type": "ECOSYSTEM", "events": sib_events}],
                }
            )
        record: dict[str, Any] = {
            "schema_version": "1.6.0",
            "id": vid,
            **self.dates(year),
            "aliases": [cve],
            "summary": self.text(1)[:90].rstrip(". ") or name,
            "details": self.text(3),
            "affected": affected,
            "references": self.references(vid, cve),
            "database_specific": self.ghsa_specific(),
        }
        if rng.random() < 0.85:
            record["severity"] = self.cvss()
        if rng.random() < 0.005:
            record["withdrawn"] = record["modified"]
        if eco == "PyPI" and rng.random() < 0.25:
            self.twins["PyPI"].append(
                {
                    "id": f"PYSEC-{year}-{next(self.serial)}",
                    **self.dates(year),
                    "aliases": [vid, cve],
                    "details": record["details"],
                    "affected": [
                        {
                            "package": {
                                "ecosystem": "PyPI",
                                "name": name,
                                "purl": f"pkg:pypi/{name}",
                            },
                            "ranges": [{"type": "ECOSYSTEM", "events": events}],
                            "versions": hit,
                        }
                    ],
                }
            )
            for ev in events:
                if "fixed" in ev:
                    self.fixes[(target, name)][ev["fixed"]].add(self.twins["PyPI"][-1]["id"])
        return record

    def _pypi(self) -> dict[str, Any]:
        return self._language("PyPI", "ECOSYSTEM", "pypi")

    def _npm(self) -> dict[str, Any]:
        return self._language("npm", "SEMVER", "npm")

    def _maven(self) -> dict[str, Any]:
        return self._language("Maven", "ECOSYSTEM", "maven")

    def _go(self) -> dict[str, Any]:
        rng = self.rng
        name = self.pick_name("Go")
        year, cve = self.new_cve()
        vid = f"GO-{year}-{next(self.serial):04d}"
        ghsa = self.ghsa()
        events, _ = self.events(releases("Go", name), "Go", name, vid)
        entry = {
            "package": {"ecosystem": "Go", "name": name, "purl": f"pkg:golang/{name}"},
            "ranges": [{"type": "SEMVER", "events": events}],
            "ecosystem_specific": {
                "imports": [
                    {
                        "path": f"{name}/internal/{_word(rng, 2)}",
                        "symbols": ["Reader.Read", "Parse"],
                    }
                ]
            },
        }
        if rng.random() < 0.3:  # GitHub's twin, with the CVSS vector the Go record lacks
            for ev in events:
                if "fixed" in ev:
                    self.fixes[("Go", name)][ev["fixed"]].add(ghsa)
            self.twins["Go"].append(
                {
                    "id": ghsa,
                    **self.dates(year),
                    "aliases": [cve],
                    "summary": f"{name} issue",
                    "affected": [
                        {
                            "package": {"ecosystem": "Go", "name": name},
                            "ranges": [{"type": "SEMVER", "events": events}],
                        }
                    ],
                    "severity": self.cvss(),
                    "database_specific": self.ghsa_specific(),
                }
            )
        return {
            "schema_version": "1.6.0",
            "id": vid,
            **self.dates(year),
            "aliases": [cve, ghsa],
            "summary": self.text(1)[:80].rstrip(". "),
            "details": self.text(2),
            "affected": [entry],
            "database_specific": {"url": f"https://pkg.go.dev/vuln/{vid}"},
        }


# --- inventory ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    package: Package
    how: str  # "newest", "at-fix" or "older"
    fixed_here: frozenset[str] = frozenset()  # advisories fixed at exactly this version


def inventory(gen: Generator, rng: random.Random) -> list[Installed]:
    out: list[Installed] = []
    for eco in ECOSYSTEMS:
        release = {"Debian": DEBIAN_INSTALLED, "Alpine": ALPINE_INSTALLED}.get(eco.name, "")
        target = f"{eco.name}:{release}" if release else eco.name
        names = gen.names[eco.name]
        chosen: dict[str, None] = {}
        wanted = eco.installed - (eco.installed // 10 if eco.name == "Debian" else 0)
        while len(chosen) < wanted:  # half popular (by the advisories' skew), half long tail
            if rng.random() < 0.5:
                name = rng.choices(names, cum_weights=gen.weights[eco.name])[0]
            else:
                name = rng.choice(names)
            if name not in NOT_IN_IMAGES:
                chosen[name] = None
        for name in chosen:
            versions = releases(eco.name, name, release if eco.name == "Debian" else "")
            fixes = gen.fixes.get((target, name), {})
            roll = rng.random()
            if roll < 0.25 and fixes:
                how, version = "at-fix", rng.choice(sorted(fixes))
            elif roll < 0.6:
                how, version = "newest", versions[-1]
            else:
                how, version = "older", rng.choice(versions)
            shown, fixed_here = version, frozenset(fixes.get(version, ()))
            if eco.name == "PyPI":  # pip writes the name as the project spells it, variously
                shown_name = name.lower().replace("_", "-") if rng.random() < 0.5 else name
            else:
                shown_name = name
            if eco.name == "Go":
                shown = f"v{version}"
                if how == "older" and rng.random() < 0.1:
                    shown = "v0.0.0-20230405123456-abcdef012345"  # a pseudo-version
                    fixed_here = frozenset()
            distro = f"{eco.name}:{release}" if release else None
            pkg = Package(eco.name, shown_name, shown, f"pkg:x/{name}@{shown}", distro)
            out.append(Installed(pkg, how, fixed_here))
        if eco.name == "Debian":  # binaries built from one source: same name and version
            sources = [i for i in out if i.package.ecosystem == "Debian"]
            for i in rng.sample(sources, eco.installed - wanted):
                p = i.package
                binary = Package(p.ecosystem, p.name, p.version, f"{p.purl}-bin", p.distro)
                out.append(Installed(binary, i.how, i.fixed_here))
    return out


# --- measuring ------------------------------------------------------------------------------


class Parsed:
    """The generator's dicts through `parse_record`, with generating and parsing timed apart,
    so the import is fed a stream (as `load_path` feeds it) but timed on its own."""

    def __init__(self, dicts: Iterator[dict[str, Any]]) -> None:
        self._dicts = dicts
        self.generating = self.parsing = 0.0
        self.count = 0

    def __iter__(self) -> Iterator[OsvRecord]:
        clock = time.perf_counter
        while True:
            t0 = clock()
            d = next(self._dicts, None)
            t1 = clock()
            self.generating += t1 - t0
            if d is None:
                return
            record = parse_record(d)
            self.parsing += clock() - t1
            self.count += 1
            yield record


def new_database(workdir: Path, name: str) -> str:
    url = f"sqlite+aiosqlite:///{workdir / name}"
    migrate(url)
    return url


async def import_all(url: str, records: Iterable[OsvRecord]) -> tuple[ImportResult, float]:
    """One transaction, as `crowsnest vulndb import` does."""
    db = Database(DatabaseSettings(url=url))
    try:
        start = time.perf_counter()
        async with db.transaction() as s:
            result = await advisories.import_records(s, records)
        return result, time.perf_counter() - start
    finally:
        await db.dispose()


def names_by_ecosystem(packages: Sequence[Package]) -> dict[str, list[str]]:
    """What `Vulnerabilities.findings` asks `candidates` for, normalised as it normalises."""
    by_ecosystem: dict[str, set[str]] = defaultdict(set)
    for p in packages:
        base = base_ecosystem(p.target)
        by_ecosystem[base].add(normalize_name(base, p.name))
    return {e: sorted(n) for e, n in by_ecosystem.items()}


async def sql_only(db: Database, packages: Sequence[Package]) -> list[tuple[str, str]]:
    """The statements `advisories.candidates` runs, rows fetched but not parsed."""
    rows: list[tuple[str, str]] = []
    async with db.transaction() as s:
        for ecosystem, names in names_by_ecosystem(packages).items():
            for i in range(0, len(names), advisories.BATCH):
                ids = (
                    select(AdvisoryPackage.advisory_id)
                    .where(AdvisoryPackage.ecosystem == ecosystem)
                    .where(AdvisoryPackage.name.in_(names[i : i + advisories.BATCH]))
                )
                result = await s.execute(
                    select(Advisory.id, Advisory.raw).where(
                        Advisory.id.in_(ids), Advisory.withdrawn.is_(None)
                    )
                )
                rows += [(r.id, r.raw) for r in result]
    return rows


class GcTimer:
    """Time spent in garbage-collector passes while the block runs, by generation."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.passes = [0, 0, 0]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.passes[info["generation"]] += 1

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)


def other_versions(installed: Sequence[Installed], rng: random.Random) -> list[Package]:
    """The same packages, each at another of its versions where it has one."""
    out = []
    for i in installed:
        p = i.package
        release = p.distro.split(":", 1)[1] if p.distro and p.ecosystem == "Debian" else ""
        versions = [v for v in releases(p.ecosystem, p.name, release) if v != p.version]
        version = rng.choice(versions) if versions else p.version
        version = f"v{version}" if p.ecosystem == "Go" else version
        out.append(Package(p.ecosystem, p.name, version, p.purl, p.distro))
    return out


async def lookups(
    url: str, packages: Sequence[Package], others: Sequence[Package]
) -> dict[str, Any]:
    osv.parsed_version.cache_clear()
    db = Database(DatabaseSettings(url=url))
    vulns = Vulnerabilities(db, freeze_after=FREEZE_AFTER)  # as `serve` runs it
    clock = time.perf_counter
    try:
        start = clock()
        cold = await vulns.findings(packages)
        t_cold = clock() - start
        with GcTimer() as gc_timer:
            start = clock()
            warm_matched = await vulns.matches(packages)
            t_warm = clock() - start
        start = clock()
        warm = await vulns.findings(packages)
        t_warm_findings = clock() - start
        start = clock()
        other = await vulns.matches(others)
        t_other = clock() - start
        start = clock()
        other_findings = to_findings(other)
        t_other_findings = t_other + clock() - start
        start = clock()
        rows = await sql_only(db, packages)
        t_sql = clock() - start
    finally:
        await db.dispose()
    start = clock()
    found: dict[str, OsvRecord] = {}
    for advisory_id, raw in rows:
        if advisory_id not in found:
            found[advisory_id] = parse_record(raw)
    t_parse = clock() - start
    records = list(found.values())
    start = clock()
    tables = compile_index(records)
    t_compile = clock() - start
    start = clock()
    matched = match_compiled(packages, tables)  # every cell met for the first time
    t_match = clock() - start
    assert len(cold) == len(warm) == len(matched), (len(cold), len(warm), len(matched))
    assert len(warm_matched) == len(
        {(f.package.target, f.package.name, f.installed) for f in matched}
    )
    return {
        "cold": t_cold,
        "warm": t_warm,
        "warm_findings": t_warm_findings,
        "other": t_other,
        "other_findings": t_other_findings,
        "gc": gc_timer,
        "sql": t_sql,
        "parse": t_parse,
        "compile": t_compile,
        "match": t_match,
        "rows": len(rows),
        "records": records,
        "matched": matched,
        "findings": warm,
        "other_count": len(other_findings),
        "other_packages": len(other),
    }


async def warm_findings(
    prof: cProfile.Profile, url: str, packages: Sequence[Package], others: Sequence[Package]
) -> None:
    """Load the tables, then profile only the call that matters: the inventory again, or the
    same names at other versions."""
    db = Database(DatabaseSettings(url=url))
    try:
        vulns = Vulnerabilities(db, freeze_after=FREEZE_AFTER)
        await vulns.findings(packages)
        prof.enable()
        await vulns.findings(others)
        prof.disable()
    finally:
        await db.dispose()


def profile(label: str, run: Any, top: int = 10) -> None:
    """Profile `run(prof)`, which enables and disables `prof` around what it measures."""
    prof = cProfile.Profile()
    gc.collect()
    gc.disable()  # the GC's share is printed above; here its passes would land on random calls
    try:
        run(prof)
    finally:
        prof.disable()
        gc.enable()
    for order, where, what in (
        ("tottime", (), "by own time"),
        ("cumulative", ("bot/",), "the project's code, cumulative"),
    ):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(order).print_stats(*where, top)
        lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
        first = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
        print(f"\nprofile of {label}, {what} (garbage collector off):")
        for ln in lines[first : first + top + 1]:
            for prefix in (str(ROOT), sys.prefix, sys.base_prefix):
                ln = ln.replace(prefix + "/", "")
            print("  " + ln[:140])


def table_counts(url: str) -> tuple[int, int, int, float]:
    path = Path(url.split(":///", 1)[1])
    with sqlite3.connect(path) as conn:
        live = conn.execute("select count(*) from advisories where withdrawn is null").fetchone()
        tomb = conn.execute("select count(*) from advisories where withdrawn is not null")
        tombs = tomb.fetchone()
        pkgs = conn.execute("select count(*) from advisory_packages").fetchone()
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return int(live[0]), int(tombs[0]), int(pkgs[0]), size / 1e6


def check_fixed(installed: Sequence[Installed], matched: Sequence[VulnFinding]) -> int:
    """Findings for an advisory against a package installed at that advisory's fixed version."""
    by_package: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for f in matched:
        p = f.package
        by_package[(p.target, normalize_name(p.target, p.name), p.version)] |= {
            f.vuln_id,
            *f.aliases,
        }
    wrong = 0
    for i in installed:
        p = i.package
        reported = by_package.get((p.target, normalize_name(p.target, p.name), p.version), set())
        wrong += len(i.fixed_here & reported)
    return wrong


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--advisories", type=int, default=TOTAL)
    p.add_argument("--timed", type=int, default=TIMED)
    p.add_argument("--profile", action="store_true", help="profile import and lookup anyway")
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="crowsnest-vulns-bench-"))
    began = time.perf_counter()
    try:
        return run(workdir, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"total bench time: {time.perf_counter() - began:.0f} s")


def run(workdir: Path, args: argparse.Namespace) -> int:
    url = new_database(workdir, "advisories.db")
    gen = Generator(SEED)

    timed = Parsed(gen.take(args.timed))
    res1, total1 = asyncio.run(import_all(url, timed))
    own1 = total1 - timed.generating - timed.parsing
    with_parse = own1 + timed.parsing
    print(f"import of {timed.count:,} advisories into a fresh SQLite database, one transaction:")
    print(
        f"  import_records {own1:.1f} s + parse_record {timed.parsing:.1f} s = "
        f"{with_parse:.1f} s ({timed.count / with_parse:,.0f}/s); the bench's own generating "
        f"of the dicts ({timed.generating:.1f} s) is left out"
    )
    print(f"  {res1.added:,} added, {res1.unchanged:,} unchanged (withdrawn: tombstones only)")

    rest = Parsed(gen.take(args.advisories - args.timed))
    res2, total2 = asyncio.run(import_all(url, rest))
    own2 = total2 - rest.generating - rest.parsing
    live, tombs, pkg_rows, size_mb = table_counts(url)
    print(
        f"the other {rest.count:,}, into the same database: import_records {own2:.1f} s + "
        f"parse_record {rest.parsing:.1f} s ({res2.added:,} added)"
    )
    by_eco = ", ".join(f"{e} {n:,}" for e, n in sorted(gen.generated.items()))
    print(
        f"advisories stored: {live:,} live + {tombs:,} withdrawn tombstones, "
        f"{pkg_rows:,} package rows, {size_mb:.0f} MB; generated: {by_eco}"
    )

    installed = inventory(gen, random.Random(SEED + 1))
    del gen  # measure the lookups with the process's heap as a server's would be, not ours
    releases.cache_clear()
    gc.collect()
    packages = [i.package for i in installed]
    hows = Counter(i.how for i in installed)
    eco_mix = Counter(p.ecosystem for p in packages)
    print(
        f"\ninventory: {len(packages):,} packages ("
        + ", ".join(f"{e} {n}" for e, n in eco_mix.items())
        + f"): {hows['newest']} at the newest release, {hows['at-fix']} at a version an "
        f"advisory names as fixed, {hows['older']} at an older one"
    )

    others = other_versions(installed, random.Random(SEED + 3))
    r = asyncio.run(lookups(url, packages, others))
    matched: list[VulnFinding] = r["matched"]
    hit = {(f.package.target, f.package.name, f.package.version) for f in matched}
    per_eco = Counter(base_ecosystem(f.package.ecosystem) for f in matched)
    sev = Counter(str(f.severity) for f in matched)
    fixable = sum(1 for f in matched if f.fixed_version)
    print(
        f"candidate records: {len(r['records']):,}; findings: {len(r['findings']):,} on "
        f"{len(hit):,} packages ({fixable:,} with a fixed version)"
    )
    cand = Counter(
        base_ecosystem(next(e.package.ecosystem for e in rec.affected if e.package))
        for rec in r["records"]
    )
    print("  candidates by ecosystem: " + ", ".join(f"{e} {n:,}" for e, n in sorted(cand.items())))
    print(
        "  findings by ecosystem: "
        + ", ".join(f"{e} {n:,}" for e, n in sorted(per_eco.items()))
        + "; by severity: "
        + ", ".join(f"{s} {n:,}" for s, n in sev.most_common())
    )
    wrong = check_fixed(installed, matched)
    print(
        f"  check: advisories reported against a package installed at their fixed version: "
        f"{wrong} (expected 0)"
    )

    ms = {k: v * 1e3 for k, v in r.items() if isinstance(v, float)}
    print(
        f"\nfindings() for {len(packages):,} packages, cold (fresh engine, caches cleared): "
        f"{ms['cold']:6.0f} ms"
    )
    print(f"match once loaded (matches(), the second call):            {ms['warm']:6.0f} ms")
    gct: GcTimer = r["gc"]
    print(
        f"  of which garbage-collector passes: {sum(gct.seconds) * 1e3:.0f} ms "
        f"({gct.passes[2]} full passes {gct.seconds[2] * 1e3:.0f} ms, "
        f"{gct.passes[0] + gct.passes[1]} younger ones {sum(gct.seconds[:2]) * 1e3:.0f} ms)"
    )
    print(
        f"match once loaded, the same names at other versions:       {ms['other']:6.0f} ms "
        f"({r['other_packages']:,} vulnerable packages; most versions meet their table's cell "
        f"the first time)"
    )
    print(
        f"findings() once loaded, the match as the pipeline's Findings: {ms['warm_findings']:.0f}"
        f" ms ({len(r['findings']):,}), at other versions {ms['other_findings']:.0f} ms "
        f"({r['other_count']:,}; no goal)"
    )
    print(
        f"  baseline, the cold call's parts measured apart: SQL of the candidate lookup "
        f"{ms['sql']:.0f} ms ({r['rows']:,} rows), parse_record of them {ms['parse']:.0f} ms, "
        f"compiling them into per-name tables {ms['compile']:.0f} ms, "
        f"match_compiled() on those fresh tables {ms['match']:.0f} ms"
    )

    import_ok = with_parse < IMPORT_GOAL_S
    warm_ok = max(ms["warm"], ms["other"]) < MATCH_GOAL_MS
    print(
        f"\ngoal import of {timed.count:,} under {IMPORT_GOAL_S:.0f} s: "
        f"{'met' if import_ok else 'NOT met'} ({with_parse:.1f} s with parse_record)"
    )
    print(
        f"goal match under {MATCH_GOAL_MS:.0f} ms once loaded (the same inventory again, "
        f"and at other versions): {'met' if warm_ok else 'NOT met'} "
        f"({ms['warm']:.0f} ms, {ms['other']:.0f} ms)"
    )

    if not import_ok or args.profile:
        sample = list(Parsed(Generator(SEED + 2).take(5_000)))
        scratch = new_database(workdir, "profile.db")

        def import_sample(prof: cProfile.Profile) -> None:
            prof.enable()
            asyncio.run(import_all(scratch, sample))

        profile("import_records of 5,000 advisories", import_sample)
    if not warm_ok or args.profile:
        profile(
            f"a warm findings() for {len(packages):,} packages",
            lambda prof: asyncio.run(warm_findings(prof, url, packages, packages)),
        )
        profile(
            f"a warm findings() for {len(packages):,} packages at other versions",
            lambda prof: asyncio.run(warm_findings(prof, url, packages, others)),
        )
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
