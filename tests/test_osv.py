"""OSV records: loading real samples and zips, the schema's matching algorithm, severities,
and turning matches into findings."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from bot.model.findings import Severity
from bot.vulns.match import Package, compile_index, match, matches, to_findings
from bot.vulns.osv import (
    LoadError,
    OsvRecord,
    affects,
    band,
    load_path,
    normalize_name,
    parse_record,
    release_matches,
    severity_of,
)

OSV = Path(__file__).parent / "fixtures" / "osv"
REAL_IDS = {
    "DSA-3029-1",
    "GHSA-35jh-r3h4-6jhm",
    "GO-2020-0001",
    "GO-2022-0969",
    "PYSEC-2018-28",
    "PYSEC-2023-74",
}


def real(record_id: str) -> OsvRecord:
    return parse_record((OSV / f"{record_id}.json").read_bytes())


def record(*affected: dict[str, Any], id: str = "TEST-1", **fields: Any) -> OsvRecord:
    return parse_record(
        {"id": id, "modified": "2024-01-01T00:00:00Z", "affected": list(affected), **fields}
    )


def pkg(
    events: list[dict[str, str]] | None = None,
    *,
    ecosystem: str = "PyPI",
    name: str = "demo",
    versions: list[str] | None = None,
    range_type: str = "ECOSYSTEM",
    ranges: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"package": {"ecosystem": ecosystem, "name": name}, **extra}
    if ranges is not None:
        entry["ranges"] = ranges
    elif events is not None:
        entry["ranges"] = [{"type": range_type, "events": events}]
    if versions is not None:
        entry["versions"] = versions
    return entry


# --- loading ----------------------------------------------------------------------------------


def test_every_real_sample_loads() -> None:
    errors: list[LoadError] = []
    records = list(load_path(OSV, errors))
    assert errors == []  # and pypa-original-yaml/*.yaml is not JSON: skipped, not an error
    assert {r.id for r in records} == REAL_IDS
    by_id = {r.id: r for r in records}
    assert by_id["DSA-3029-1"].affected[0].package is not None
    assert by_id["DSA-3029-1"].affected[0].package.ecosystem == "Debian:7"
    assert by_id["GHSA-35jh-r3h4-6jhm"].severity[0].type == "CVSS_V3"
    assert by_id["PYSEC-2018-28"].modified.tzinfo is not None
    assert len(by_id["PYSEC-2023-74"].affected[0].ranges) == 2  # GIT and ECOSYSTEM
    # The stored form keeps what the model ignores (references, credits).
    assert "references" in json.loads(by_id["GO-2020-0001"].raw_json())


def test_bad_files_are_reported_and_skipped(tmp_path: Path) -> None:
    (tmp_path / "nested").mkdir()
    (tmp_path / "good.json").write_bytes((OSV / "GO-2020-0001.json").read_bytes())
    (tmp_path / "nested" / "broken.json").write_text("{not json")
    (tmp_path / "nested" / "no-id.json").write_text('{"modified": "2024-01-01T00:00:00Z"}')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "notes.txt").write_text("ignored")
    errors: list[LoadError] = []
    records = list(load_path(tmp_path, errors))
    assert [r.id for r in records] == ["GO-2020-0001"]
    reasons = {Path(e.path.split("[")[0]).name: e.error for e in errors}
    assert set(reasons) == {"broken.json", "no-id.json", "list.json", "binary.json"}
    assert "invalid JSON" in reasons["broken.json"]
    assert "id: Field required" in reasons["no-id.json"]
    assert all(isinstance(e, tuple) and len(e) == 2 for e in errors)


def test_a_json_array_of_records_and_a_single_file_load(tmp_path: Path) -> None:
    feed = tmp_path / "all.json"
    feed.write_text(json.dumps([json.loads((OSV / f"{i}.json").read_text()) for i in REAL_IDS]))
    assert {r.id for r in load_path(feed)} == REAL_IDS
    assert [r.id for r in load_path(OSV / "DSA-3029-1.json")] == ["DSA-3029-1"]


def test_zip_import_streams_members(tmp_path: Path) -> None:
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(OSV.glob("*.json")):
            zf.writestr(file.name, file.read_bytes())
        zf.writestr("bad.json", "{}")
        zf.writestr("README.txt", "not a record")
    errors: list[LoadError] = []
    records = list(load_path(archive, errors))
    assert {r.id for r in records} == REAL_IDS
    assert [e.path for e in errors] == [f"{archive}!bad.json"]
    assert list(tmp_path.iterdir()) == [archive]  # nothing extracted
    # A directory holding the zip reads it too.
    assert {r.id for r in load_path(tmp_path)} == REAL_IDS


def test_unusable_paths_raise(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(load_path(tmp_path / "missing"))
    (tmp_path / "fake.zip").write_text("not a zip")
    with pytest.raises(zipfile.BadZipFile):
        list(load_path(tmp_path / "fake.zip"))
    errors: list[LoadError] = []
    assert list(load_path(tmp_path, errors)) == []  # inside a directory: reported instead
    assert errors == [LoadError(str(tmp_path / "fake.zip"), "not a zip archive")]


# --- matching: the schema's evaluation --------------------------------------------------------

INTRODUCED_FIXED = [{"introduced": "1.0"}, {"fixed": "1.2"}]
FROM_ZERO = [{"introduced": "0"}, {"fixed": "2.0.1"}]
LAST_AFFECTED = [{"introduced": "0"}, {"last_affected": "1.5"}]
LIMITED = [{"introduced": "1.0"}, {"limit": "2.0"}]
UNLIMITED = [{"introduced": "1.0"}, {"limit": "*"}]
TWO_WINDOWS = [{"introduced": "1.0"}, {"fixed": "1.0.2"}, {"introduced": "3.0"}, {"fixed": "3.2.5"}]
UNSORTED = [{"fixed": "3.2.5"}, {"introduced": "3.0"}, {"fixed": "1.0.2"}, {"introduced": "1.0"}]
UNFIXED = [{"introduced": "0"}]


@pytest.mark.parametrize(
    ("events", "installed", "fixed"),
    [
        (INTRODUCED_FIXED, "0.9", None),
        (INTRODUCED_FIXED, "1.0", "1.2"),
        (INTRODUCED_FIXED, "1.1.9", "1.2"),
        (INTRODUCED_FIXED, "1.2", None),
        (INTRODUCED_FIXED, "1.2.0", None),  # PEP 440: the same as 1.2
        (INTRODUCED_FIXED, "1.2rc1", "1.2"),  # a pre-release of the fix is still affected
        (FROM_ZERO, "0.0.1.dev0", "2.0.1"),
        (FROM_ZERO, "2.0.1", None),
        (LAST_AFFECTED, "1.5", "-"),
        (LAST_AFFECTED, "1.5.post1", None),
        (LIMITED, "1.9", "-"),
        (LIMITED, "2.0", None),
        (UNLIMITED, "99", "-"),
        (UNLIMITED, "0.9", None),
        (TWO_WINDOWS, "1.0.1", "1.0.2"),
        (TWO_WINDOWS, "2.0", None),
        (TWO_WINDOWS, "3.1", "3.2.5"),
        (TWO_WINDOWS, "3.2.5", None),
        (UNSORTED, "1.0.1", "1.0.2"),
        (UNSORTED, "3.1", "3.2.5"),
        (UNSORTED, "2.0", None),
        (UNFIXED, "0.0.0", "-"),
        (UNFIXED, "2024.1", "-"),
    ],
)
def test_range_events(events: list[dict[str, str]], installed: str, fixed: str | None) -> None:
    """`fixed` is the expected fixed version, "-" for affected without one, None for unaffected."""
    hit = affects(record(pkg(events)), "PyPI", "demo", installed)
    if fixed is None:
        assert hit is None
    else:
        assert hit is not None
        assert hit.fixed_version == (None if fixed == "-" else fixed)


def test_semver_ranges_use_semver_order_and_go_tags() -> None:
    rec = record(
        pkg(
            [{"introduced": "0"}, {"fixed": "1.4.0"}],
            ecosystem="Go",
            name="example.com/mod",
            range_type="SEMVER",
        )
    )
    assert affects(rec, "Go", "example.com/mod", "v1.4.0-rc.1") is not None
    assert affects(rec, "Go", "example.com/mod", "v1.4.0") is None
    assert affects(rec, "Go", "example.com/mod", "v1.10.0") is None
    assert affects(rec, "Go", "example.com/Mod", "v1.0.0") is None  # Go paths are exact


def test_explicit_versions_and_git_ranges() -> None:
    git = {"type": "GIT", "repo": "https://example.com/r", "events": [{"introduced": "a" * 40}]}
    rec = record(pkg(ranges=[git], versions=["1.0", "1.1"]))
    assert affects(rec, "PyPI", "demo", "1.1") is not None
    assert affects(rec, "PyPI", "demo", "1.1.0") is not None  # equal in PEP 440
    assert affects(rec, "PyPI", "demo", "1.2") is None  # a GIT range alone decides nothing


def test_multiple_range_objects_and_the_lowest_fix_above_the_installed_version() -> None:
    rec = record(
        pkg(
            ranges=[
                {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.18.6"}]},
                {"type": "ECOSYSTEM", "events": [{"introduced": "1.19"}, {"fixed": "1.19.1"}]},
            ]
        )
    )
    hit_old = affects(rec, "PyPI", "demo", "1.18.0")
    hit_new = affects(rec, "PyPI", "demo", "1.19.0")
    assert hit_old is not None and hit_old.fixed_version == "1.18.6"
    assert hit_new is not None and hit_new.fixed_version == "1.19.1"
    assert affects(rec, "PyPI", "demo", "1.18.7") is None


def test_unparseable_versions_do_not_crash() -> None:
    rec = record(pkg([{"introduced": "0"}, {"fixed": "1.2"}], versions=["weird-1"]))
    assert affects(rec, "PyPI", "demo", "weird-1") is not None  # found in versions
    assert affects(rec, "PyPI", "demo", "not a version") is None
    broken = record(pkg([{"introduced": "0"}, {"fixed": "not a version"}]))
    assert affects(broken, "PyPI", "demo", "1.0") is None


def test_names_are_normalised_per_ecosystem() -> None:
    py = record(pkg(UNFIXED, name="flask-caching"))
    assert affects(py, "PyPI", "Flask_Caching", "1.0") is not None
    assert affects(py, "PyPI", "flask..caching", "1.0") is not None
    npm = record(pkg(UNFIXED, ecosystem="npm", name="lodash"))
    assert affects(npm, "npm", "Lodash", "1.0.0") is None
    assert affects(npm, "PyPI", "lodash", "1.0") is None
    assert normalize_name("NuGet", "Newtonsoft.Json") == "newtonsoft.json"
    assert normalize_name("Maven", "org.Foo:Bar") == "org.Foo:Bar"


def test_withdrawn_records_hit_nothing() -> None:
    rec = record(pkg(UNFIXED), withdrawn="2024-02-01T00:00:00Z")
    assert affects(rec, "PyPI", "demo", "1.0") is None


# --- OS releases ------------------------------------------------------------------------------


def test_the_debian_advisory_hits_the_vulnerable_version_only() -> None:
    dsa = real("DSA-3029-1")
    hit = affects(dsa, "Debian:7", "nginx", "1.2.1-2.2+wheezy2")
    assert hit is not None
    assert hit.id == "DSA-3029-1" and hit.aliases == ("CVE-2014-3616",)
    assert hit.fixed_version == "1.2.1-2.2+wheezy3"
    assert hit.summary == "nginx - security update"
    assert hit.severity is Severity.MEDIUM  # no CVSS and no severity word
    assert affects(dsa, "Debian:7", "nginx", "1.2.1-2.2+wheezy3") is None
    assert affects(dsa, "Debian:7", "nginx", "1.2.1-2.2+wheezy3+b1") is None
    assert affects(dsa, "Debian:7.11", "nginx", "1.2.1-2.2") is not None  # point release
    assert affects(dsa, "Debian:wheezy", "nginx", "1.2.1-2.2") is not None
    assert affects(dsa, "Debian:12", "nginx", "1.2.1-2.2") is None  # another release
    assert affects(dsa, "Ubuntu:22.04", "nginx", "1.2.1-2.2") is None


@pytest.mark.parametrize(
    ("record_ecosystem", "target", "expected"),
    [
        ("Alpine:v3.19", "Alpine:3.19.1", True),
        ("Alpine:v3.19", "Alpine:v3.19", True),
        ("Alpine:v3.19", "Alpine:3.18.4", False),
        ("Alpine:v3.19", "Alpine:3.1", False),
        ("Debian:12", "Debian:12.5", True),
        ("Debian:12", "Debian:bookworm", True),
        ("Debian:11", "Debian:12", False),
        ("Debian", "Debian:12", True),
        ("Debian:12", "Debian", True),
        ("Ubuntu:22.04:LTS", "Ubuntu:22.04", True),
        ("Ubuntu:Pro:18.04:LTS", "Ubuntu:18.04", True),
        ("Ubuntu:22.04:LTS", "Ubuntu:24.04", False),
        ("Red Hat:enterprise_linux:9::appstream", "Red Hat:9.3", True),
        ("Red Hat:enterprise_linux:8::appstream", "Red Hat:9.3", False),
        ("Debian:sid", "Debian:sid", True),
        ("Alpine:v3.19", "Debian:12", False),
    ],
)
def test_release_matching(record_ecosystem: str, target: str, expected: bool) -> None:
    assert release_matches(record_ecosystem, target) is expected


def test_alpine_records_match_by_release_branch_in_apk_order() -> None:
    rec = record(
        pkg([{"introduced": "0"}, {"fixed": "3.1.4-r6"}], ecosystem="Alpine:v3.19", name="openssl")
    )
    hit = affects(rec, "Alpine:3.19.1", "openssl", "3.1.4-r5")
    assert hit is not None and hit.fixed_version == "3.1.4-r6"
    assert affects(rec, "Alpine:3.19.1", "openssl", "3.1.4-r6") is None
    assert affects(rec, "Alpine:3.19.1", "openssl", "3.1.4-r10") is None  # not "r1" + "0"
    assert affects(rec, "Alpine:3.18.5", "openssl", "3.1.4-r5") is None


# --- real records -----------------------------------------------------------------------------


def test_real_go_records() -> None:
    go = real("GO-2022-0969")
    hit = affects(go, "Go", "stdlib", "v1.19.0")
    assert hit is not None and hit.fixed_version == "1.19.1"
    hit = affects(go, "Go", "stdlib", "1.18.5")
    assert hit is not None and hit.fixed_version == "1.18.6"
    assert affects(go, "Go", "stdlib", "1.18.6") is None
    assert affects(go, "Go", "stdlib", "1.19.1") is None
    pseudo = affects(go, "Go", "golang.org/x/net", "v0.0.0-20220826154423-83b083e8dc8b")
    assert pseudo is not None and pseudo.fixed_version == "0.0.0-20220906165146-f3363e06e74c"
    assert affects(go, "Go", "golang.org/x/net", "v0.1.0") is None
    gin = real("GO-2020-0001")
    assert affects(gin, "Go", "github.com/gin-gonic/gin", "v1.5.0") is not None
    assert affects(gin, "Go", "github.com/gin-gonic/gin", "v1.6.0") is None


def test_real_pypi_records_use_ranges_and_versions() -> None:
    old, new = real("PYSEC-2018-28"), real("PYSEC-2023-74")
    assert affects(old, "PyPI", "Requests", "2.19.1") is not None
    assert affects(old, "PyPI", "requests", "0.12.01") is not None  # listed verbatim
    assert affects(old, "PyPI", "requests", "2.20.0") is None
    hit = affects(new, "PyPI", "requests", "2.28.1")
    assert hit is not None and hit.fixed_version == "2.31.0"
    assert hit.summary.startswith("Requests is a HTTP library.")  # no summary: first line
    assert affects(new, "PyPI", "requests", "2.2.1") is None  # introduced in 2.3.0
    assert affects(new, "PyPI", "requests", "2.31.0") is None


def test_real_npm_record_with_cvss() -> None:
    ghsa = real("GHSA-35jh-r3h4-6jhm")
    for name in ("lodash", "lodash-es"):
        hit = affects(ghsa, "npm", name, "4.17.20")
        assert hit is not None and hit.fixed_version == "4.17.21"
        assert hit.severity is Severity.HIGH  # CVSS:3.1 … 7.2
    assert affects(ghsa, "npm", "lodash", "4.17.21") is None


# --- severity ---------------------------------------------------------------------------------

V3_CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
V3_MEDIUM = "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:L/A:N"  # 5.4
V4_HIGH = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N"  # 8.7


@pytest.mark.parametrize(
    ("fields", "entry_extra", "expected"),
    [
        ({"severity": [{"type": "CVSS_V3", "score": V3_CRITICAL}]}, {}, Severity.CRITICAL),
        ({"severity": [{"type": "CVSS_V3", "score": V3_MEDIUM}]}, {}, Severity.MEDIUM),
        ({"severity": [{"type": "CVSS_V4", "score": V4_HIGH}]}, {}, Severity.HIGH),
        (
            {
                "severity": [
                    {"type": "CVSS_V3", "score": V3_CRITICAL},
                    {"type": "CVSS_V4", "score": V4_HIGH},
                ]
            },
            {},
            Severity.HIGH,  # the newer standard wins
        ),
        ({"severity": [{"type": "CVSS_V3", "score": "garbage"}]}, {}, Severity.MEDIUM),
        ({"database_specific": {"severity": "MODERATE"}}, {}, Severity.MEDIUM),
        ({"database_specific": {"severity": "CRITICAL"}}, {}, Severity.CRITICAL),
        ({}, {"ecosystem_specific": {"severity": "LOW"}}, Severity.LOW),
        ({}, {"database_specific": {"severity": "high"}}, Severity.HIGH),
        ({"severity": [{"type": "Ubuntu", "score": "negligible"}]}, {}, Severity.LOW),
        ({}, {"severity": [{"type": "CVSS_V3", "score": V3_CRITICAL}]}, Severity.CRITICAL),
        ({}, {}, Severity.MEDIUM),
    ],
)
def test_severity(fields: dict[str, Any], entry_extra: dict[str, Any], expected: Severity) -> None:
    rec = record(pkg(UNFIXED, **entry_extra), **fields)
    assert severity_of(rec, rec.affected[0]) is expected
    hit = affects(rec, "PyPI", "demo", "1.0")
    assert hit is not None and hit.severity is expected


def test_cvss_bands() -> None:
    assert [band(s) for s in (0.0, 3.9, 4.0, 6.9, 7.0, 8.9, 9.0, 10.0)] == [
        Severity.LOW, Severity.LOW, Severity.MEDIUM, Severity.MEDIUM,
        Severity.HIGH, Severity.HIGH, Severity.CRITICAL, Severity.CRITICAL,
    ]  # fmt: skip


# --- match and findings -----------------------------------------------------------------------


def test_match_gives_one_finding_per_vulnerability_and_package() -> None:
    records = [real(i) for i in sorted(REAL_IDS)]
    # Another database's copy of PYSEC-2023-74, linked by alias: the same vulnerability.
    records.append(
        record(
            pkg([{"introduced": "2.3.0"}, {"fixed": "2.31.0"}], name="requests"),
            id="GHSA-j8r2-6x86-q33q",
            aliases=["CVE-2023-32681", "PYSEC-2023-74"],
            summary="Unintended leak of Proxy-Authorization header in requests",
            severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N"}],
        )
    )
    # A record whose two entries both hit one package still makes one finding.
    records.append(
        record(
            pkg(
                [{"introduced": "0"}, {"fixed": "1.2.1-2.2+wheezy5"}],
                ecosystem="Debian:7",
                name="nginx",
            ),
            pkg(ecosystem="Debian:7", name="nginx", versions=["1.2.1-2.2+wheezy2"]),
            pkg([{"introduced": "0"}, {"fixed": "1.22.1-9"}], ecosystem="Debian:12", name="nginx"),
            id="DEBIAN-CVE-2099-0001",
        )
    )
    packages = [
        Package("PyPI", "Requests", "2.28.1", purl="pkg:pypi/requests@2.28.1"),
        Package("npm", "lodash", "4.17.20"),
        Package("npm", "lodash", "4.17.20"),  # listed twice: still one finding
        Package("Debian", "nginx", "1.2.1-2.2+wheezy2", distro="Debian:7"),
        Package("Debian", "nginx", "1.2.1-2.2+wheezy2", distro="Debian:12"),
        Package("Go", "stdlib", "v1.21.0"),
    ]
    found = match(packages, records)
    summary = [(f.vuln_id, f.package.name, f.package.distro, f.fixed_version) for f in found]
    assert summary == [
        ("GHSA-35jh-r3h4-6jhm", "lodash", None, "4.17.21"),
        ("DEBIAN-CVE-2099-0001", "nginx", "Debian:12", "1.22.1-9"),
        ("DEBIAN-CVE-2099-0001", "nginx", "Debian:7", "1.2.1-2.2+wheezy5"),
        ("DSA-3029-1", "nginx", "Debian:7", "1.2.1-2.2+wheezy3"),
        ("GHSA-j8r2-6x86-q33q", "Requests", None, "2.31.0"),
    ]
    requests = found[-1]
    assert requests.aliases == ("CVE-2023-32681", "PYSEC-2023-74")
    assert requests.summary == "Unintended leak of Proxy-Authorization header in requests"
    assert requests.severity is Severity.MEDIUM  # GHSA's CVSS 6.1; PYSEC has none
    assert requests.installed == "2.28.1"


def test_a_match_becomes_a_finding_keyed_by_vulnerability_and_package_with_its_fix() -> None:
    index = compile_index([real("GHSA-35jh-r3h4-6jhm")])
    [f] = to_findings(matches([Package("npm", "lodash", "4.17.20")], index))
    assert f.check_id == "GHSA-35jh-r3h4-6jhm"
    assert f.package == "lodash 4.17.20"
    assert f.severity is Severity.HIGH
    assert f.fixed_version == "4.17.21"
    assert f.title == "Command Injection in lodash"
    assert "CVE-2021-23337" in f.detail
    assert f.remediation.startswith("Upgrade lodash to 4.17.21")
    assert f.key == "GHSA-35jh-r3h4-6jhm|lodash 4.17.20"

    index = compile_index([record(pkg(UNFIXED), details="x" * 400)])
    [g] = to_findings(matches([Package("PyPI", "demo", "1.0")], index))
    assert g.fixed_version is None and g.remediation.startswith("No fix yet")
    assert len(g.title) <= 150 and g.title.endswith("…")
