"""Scanner reports (Trivy, Grype, Harbor) read into ReportFindings, and running Trivy.

The samples in tests/fixtures/reports/ are byte-for-byte copies of published files (see
shared/fixtures/real/SOURCES.md): Trivy's integration golden files, Grype's presenter and
explain test data, and the Harbor report from Harbor's report-converter test.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from bot.model.findings import Severity
from bot.vulns.reports import (
    HARBOR_REPORT_MIME,
    ReportError,
    ReportFinding,
    ScannerError,
    detect_and_parse,
    merge_duplicates,
    normalise_severity,
    parse_grype,
    parse_harbor,
    parse_trivy,
    report_kind,
    run_trivy,
    to_finding,
)

REPORTS = Path(__file__).parent / "fixtures" / "reports"
SAMPLES = sorted(p.name for p in REPORTS.glob("*.json"))


def sample(name: str) -> bytes:
    return (REPORTS / name).read_bytes()


def row(f: ReportFinding) -> tuple[object, ...]:
    return (f.vuln_id, f.package_name, f.installed, f.fixed_version, f.severity)


# --- every sample --------------------------------------------------------------------------------

EXPECTED_KIND_AND_COUNT = {
    "alpine-310.json": ("trivy", 4),
    "debian-buster.json": ("trivy", 2),
    "debian-stretch.json": ("trivy", 5),
    "TestJsonImgsPresenter.json": ("grype", 2),
    "explain-chainguard-ruby-test.json": ("grype", 2),  # 3 matches, CVE + GHSA of uri merged
    "explain-ghsa-test.json": ("grype", 1),  # GHSA + its CVE from NVD, one package
    "explain-keycloak-test.json": ("grype", 6),
    "harbor-test-vuln_report-v1.1.json": ("harbor", 1),
    "harbor-test-vuln_report-v1.1-complete.json": ("harbor", 1),
}


def test_every_sample_is_covered() -> None:
    assert set(SAMPLES) == set(EXPECTED_KIND_AND_COUNT)


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_parses_by_shape(name: str) -> None:
    kind, count = EXPECTED_KIND_AND_COUNT[name]
    data = sample(name)
    assert report_kind(json.loads(data)) == kind
    found = detect_and_parse(data)
    parser = {"trivy": parse_trivy, "grype": parse_grype, "harbor": parse_harbor}[kind]
    assert parser(data) == found
    assert len(found) == count
    for f in found:
        assert f.source == kind
        assert f.vuln_id and f.package_name and f.installed and f.title
        assert f.vuln_id not in f.aliases
        finding = to_finding(f)
        assert finding.check_id == f.vuln_id
        assert finding.package == f"{f.package_name} {f.installed}"
        assert finding.fixed_version == f.fixed_version
        assert finding.severity is f.severity


# --- Trivy ---------------------------------------------------------------------------------------


def test_trivy_alpine() -> None:
    found = parse_trivy(sample("alpine-310.json"))
    assert [row(f) for f in found] == [
        ("CVE-2019-1549", "libcrypto1.1", "1.1.1c-r0", "1.1.1d-r0", Severity.MEDIUM),
        ("CVE-2019-1551", "libcrypto1.1", "1.1.1c-r0", "1.1.1d-r2", Severity.MEDIUM),
        ("CVE-2019-1549", "libssl1.1", "1.1.1c-r0", "1.1.1d-r0", Severity.MEDIUM),
        ("CVE-2019-1551", "libssl1.1", "1.1.1c-r0", "1.1.1d-r2", Severity.MEDIUM),
    ]
    assert found[0].title == "openssl: information disclosure in fork()"
    assert found[0].purl == "pkg:apk/alpine/libcrypto1.1@1.1.1c-r0?arch=x86_64&distro=3.10.2"
    assert found[0].aliases == ()


def test_trivy_debian_buster() -> None:
    found = parse_trivy(sample("debian-buster.json"))
    assert [row(f) for f in found] == [
        ("CVE-2019-18276", "bash", "5.0-4", None, Severity.LOW),
        ("CVE-2019-18224", "libidn2-0", "2.0.5-1", "2.0.5-1+deb10u1", Severity.CRITICAL),
    ]
    assert found[1].aliases == ("DSA-4613-1",)  # Trivy's VendorIDs
    assert found[1].title.startswith("libidn2: heap-based buffer overflow in idn2_to_ascii_4i")


def test_trivy_debian_stretch() -> None:
    found = parse_trivy(sample("debian-stretch.json"))
    assert [(f.vuln_id, f.package_name) for f in found] == [
        ("CVE-2019-18276", "bash"),
        ("CVE-2019-5094", "e2fslibs"),
        ("CVE-2019-5094", "e2fsprogs"),
        ("CVE-2019-5094", "libcomerr2"),
        ("CVE-2019-5094", "libss2"),
    ]
    bash = found[0]
    assert (bash.installed, bash.fixed_version, bash.severity) == ("4.4-5", None, Severity.LOW)
    assert {f.fixed_version for f in found[1:]} == {"1.43.4-2+deb9u1"}


def test_trivy_schema_v1_list_and_empty_results() -> None:
    doc = json.loads(sample("debian-buster.json"))
    assert parse_trivy(json.dumps(doc["Results"])) == parse_trivy(sample("debian-buster.json"))
    clean = {"SchemaVersion": 2, "ArtifactName": "alpine:3.20", "ArtifactType": "container_image"}
    assert parse_trivy(json.dumps(clean)) == []
    no_vulns = {**clean, "Results": [{"Target": "alpine", "Class": "os-pkgs"}]}
    assert detect_and_parse(json.dumps(no_vulns)) == []


def test_trivy_same_vulnerability_in_two_targets_is_one_finding() -> None:
    doc = json.loads(sample("debian-buster.json"))
    doc["Results"].append(doc["Results"][0])
    assert len(parse_trivy(json.dumps(doc))) == 2


# --- Grype ---------------------------------------------------------------------------------------


def test_grype_presenter_golden() -> None:
    found = parse_grype(sample("TestJsonImgsPresenter.json"))
    assert [row(f) for f in found] == [
        # fix.versions lists 1.2.1, 2.1.3, 3.4.0: the matcher's suggested one is kept
        ("CVE-1999-0001", "package-1", "1.1.1", "1.2.1", Severity.LOW),
        ("CVE-1999-0002", "package-2", "2.2.2", None, Severity.CRITICAL),
    ]
    assert found[0].title == "CVE-1999-0001"  # no description in the golden file
    assert found[1].purl == "pkg:deb/package-2@2.2.2"


def test_grype_ghsa_and_its_cve_are_one_finding() -> None:
    (f,) = parse_grype(sample("explain-ghsa-test.json"))
    assert row(f) == ("CVE-2014-3577", "httpclient", "4.1.1", "4.3.5", Severity.MEDIUM)
    assert f.aliases == ("GHSA-cfh5-3ghh-wfjx",)
    assert f.purl == "pkg:maven/org.apache.httpcomponents/httpclient@4.1.1"
    assert f.title.startswith("org.apache.http.conn.ssl.AbstractVerifier in Apache HttpComponents")


def test_grype_chainguard() -> None:
    found = parse_grype(sample("explain-chainguard-ruby-test.json"))
    assert [row(f) for f in found] == [
        ("CVE-2023-28755", "ruby-3.0", "3.0.4-r1", "3.0.6-r0", Severity.HIGH),
        ("CVE-2023-28755", "uri", "0.10.1", "0.10.2", Severity.HIGH),
    ]
    assert found[0].aliases == ()  # Grype lists the CVE as related to itself
    assert found[1].aliases == ("GHSA-hv5j-3h9f-99c2",)
    assert found[1].title.startswith("A ReDoS issue was discovered in the URI component")
    assert len(found[1].title) <= 150 and found[1].title.endswith("…")


def test_grype_keycloak_wont_fix() -> None:
    found = parse_grype(sample("explain-keycloak-test.json"))
    assert [f.package_name for f in found] == [
        "nspr",
        "nss",
        "nss-softokn",
        "nss-softokn-freebl",
        "nss-sysinit",
        "nss-util",
    ]
    assert {(f.vuln_id, f.fixed_version, f.severity) for f in found} == {
        ("CVE-2020-12413", None, Severity.LOW)
    }
    assert found[1].installed == "3.79.0-17.el9_1"
    assert "no fixed version" in to_finding(found[1]).remediation.lower()


# --- Harbor --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["harbor-test-vuln_report-v1.1.json", "harbor-test-vuln_report-v1.1-complete.json"]
)
def test_harbor_report_bare_and_wrapped(name: str) -> None:
    (f,) = parse_harbor(sample(name))
    assert row(f) == ("CVE-2019-18276", "bash", "5.0-6ubuntu1.1", None, Severity.LOW)
    assert f.title.startswith("An issue was discovered in disable_priv_mode in shell.c")
    wrapped = json.dumps({HARBOR_REPORT_MIME: json.loads(sample(name))})
    assert parse_harbor(wrapped) == [f]
    assert detect_and_parse(wrapped) == [f]


def test_harbor_severities_and_fix_version() -> None:
    report = json.loads(sample("harbor-test-vuln_report-v1.1.json"))
    base = report["vulnerabilities"][0]
    report["vulnerabilities"] = [
        {**base, "id": f"CVE-2024-{n}", "severity": sev, "fix_version": fix}
        for n, (sev, fix) in enumerate(
            [
                ("Critical", "1"),
                ("High", ""),
                ("Medium", None),
                ("Negligible", "2"),
                ("Unknown", ""),
            ]
        )
    ]
    found = parse_harbor(json.dumps(report))
    assert [(f.severity, f.fixed_version) for f in found] == [
        (Severity.CRITICAL, "1"),
        (Severity.HIGH, None),
        (Severity.MEDIUM, None),
        (Severity.LOW, "2"),
        (Severity.INFO, None),
    ]


def test_severity_words() -> None:
    assert normalise_severity("CRITICAL") is Severity.CRITICAL
    assert normalise_severity("Moderate") is Severity.MEDIUM
    assert normalise_severity("Negligible") is Severity.LOW
    assert normalise_severity("UNKNOWN") is Severity.INFO
    assert normalise_severity(None) is Severity.INFO


# --- malformed input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[1, 2]",
        b'"a string"',
        b"{}",
        b'{"Results": "nope", "SchemaVersion": 2}',
        b'{"SchemaVersion": 2, "Results": [{"Vulnerabilities": [{"PkgName": "x"}]}]}',
        b'{"SchemaVersion": 2, "Results": [{"Vulnerabilities": [7]}]}',
        b'{"matches": [{"vulnerability": {"id": "CVE-1"}}], "descriptor": {}}',
        b'{"matches": {"a": 1}, "source": {}}',
        b'{"scanner": {}, "vulnerabilities": [{"id": "CVE-1"}]}',
        b'{"scanner": {}, "vulnerabilities": {"id": "CVE-1"}}',
        json.dumps({HARBOR_REPORT_MIME: {"vulnerabilities": [{"package": "x"}]}}).encode(),
    ],
)
def test_malformed_input_is_a_report_error(data: bytes) -> None:
    with pytest.raises(ReportError):
        detect_and_parse(data)


def test_the_wrong_parser_is_a_report_error() -> None:
    with pytest.raises(ReportError):
        parse_grype(sample("alpine-310.json"))
    with pytest.raises(ReportError):
        parse_trivy(sample("explain-ghsa-test.json"))
    with pytest.raises(ReportError):
        parse_harbor(sample("debian-buster.json"))


# --- to_finding ----------------------------------------------------------------------------------


def test_to_finding() -> None:
    f = parse_trivy(sample("debian-buster.json"))[1]
    finding = to_finding(f)
    assert finding.check_id == "CVE-2019-18224"
    assert finding.severity is Severity.CRITICAL
    assert finding.package == "libidn2-0 2.0.5-1"
    assert finding.fixed_version == "2.0.5-1+deb10u1"
    assert finding.key == "CVE-2019-18224|libidn2-0 2.0.5-1"
    assert finding.remediation == "Upgrade libidn2-0 to 2.0.5-1+deb10u1 or later, and rebuild."
    assert "DSA-4613-1" in finding.detail and "trivy" in finding.detail


def test_merge_keeps_distinct_cves_that_share_an_advisory() -> None:
    one = ReportFinding("CVE-1", ("DSA-9",), "p", "1", None, Severity.LOW, "t", "trivy")
    two = ReportFinding("CVE-2", ("DSA-9",), "p", "1", "2", Severity.HIGH, "t", "trivy")
    assert merge_duplicates([one, two]) == [one, two]
    ghsa = ReportFinding("GHSA-x", ("CVE-1",), "p", "1", "3", Severity.HIGH, "g", "grype")
    (merged, other) = merge_duplicates([one, two, ghsa])
    assert merged.vuln_id == "CVE-1" and merged.aliases == ("DSA-9", "GHSA-x")
    assert (merged.fixed_version, merged.severity) == ("3", Severity.HIGH)
    assert other == two


# --- run_trivy -----------------------------------------------------------------------------------


def fake_trivy(tmp_path: Path, body: str) -> str:
    script = tmp_path / "trivy"
    script.write_text(f"#!{sys.executable}\n{body}")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


async def test_run_trivy_reads_the_report(tmp_path: Path) -> None:
    report = REPORTS / "debian-buster.json"
    argv_file = tmp_path / "argv.json"
    trivy = fake_trivy(
        tmp_path,
        "import json, os, sys\n"
        f"open({str(argv_file)!r}, 'w').write(json.dumps([sys.argv[1:], os.environ.get('TRIVY_X')]))\n"
        f"sys.stdout.buffer.write(open({str(report)!r}, 'rb').read())\n",
    )
    found = await run_trivy(
        "127.0.0.1:5000/team/app:1.0", timeout=30, trivy=trivy, env={"TRIVY_X": "y"}
    )
    assert found == parse_trivy(report.read_bytes())
    argv, env_value = json.loads(argv_file.read_text())
    assert argv == ["image", "--format", "json", "--quiet", "127.0.0.1:5000/team/app:1.0"]
    assert env_value == "y"


async def test_run_trivy_timeout_kills_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    trivy = fake_trivy(
        tmp_path,
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(60)\n",
    )
    started = time.monotonic()
    with pytest.raises(ScannerError, match="did not finish"):
        await run_trivy("app:1", timeout=1.0, trivy=trivy)
    assert time.monotonic() - started < 10
    for pid in map(int, pid_file.read_text().split()):  # the scanner and what it started
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            if _zombie(pid):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"process {pid} still runs")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


async def test_run_trivy_failures(tmp_path: Path) -> None:
    failing = fake_trivy(
        tmp_path, "import sys\nsys.stderr.write('FATAL unauthorized\\n')\nsys.exit(1)\n"
    )
    with pytest.raises(ScannerError, match=r"exited with 1.*unauthorized"):
        await run_trivy("app:1", timeout=30, trivy=failing)
    garbage = tmp_path / "g"
    garbage.mkdir()
    not_json = fake_trivy(garbage, "print('progress 50%')\n")
    with pytest.raises(ScannerError, match="no report"):
        await run_trivy("app:1", timeout=30, trivy=not_json)
    with pytest.raises(ScannerError, match="cannot run"):
        await run_trivy("app:1", timeout=30, trivy=str(tmp_path / "missing"))
    with pytest.raises(ScannerError, match="not an image reference"):
        await run_trivy("--config=/etc/passwd", timeout=30, trivy=failing)
