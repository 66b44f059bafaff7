"""A name's advisories laid out on its version line answer exactly as each record evaluated alone.

`NameTable` is the fast path every inventory match takes; `affects` evaluates one record as the
OSV schema describes. Hypothesis draws records of the real shapes (introduced / fixed /
last_affected / limit events, `versions` lists, SEMVER beside ECOSYSTEM ranges, per-release
entries, aliases linking records) over a small version universe, so bounds collide often, and
installed versions on, between and outside those bounds, unparseable ones included.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.version import Version

from bot.model.findings import Severity
from bot.vulns.osv import Affected, OsvRecord, affects, compile_record, parse_record
from bot.vulns.table import NameTable, merge

#: Per ecosystem: release spellings for entries, the versions bounds are drawn from, and the
#: installed versions tried (those plus in-between, leading-zero and unparseable ones).
UNIVERSES: dict[str, tuple[list[str], list[str], list[str]]] = {
    "Debian": (
        ["Debian", "Debian:11", "Debian:12"],
        ["0", "1.0", "1.0-1", "1.0-1+deb12u1", "1.0~rc1", "1:0.9", "2.0", "2.0-1", "10.1"],
        ["1.0-0", "1.0+b1", "1.5", "0.1", "3", "1:0.9-1", "", "-bad-"],
    ),
    "Alpine": (
        ["Alpine:v3.19", "Alpine:v3.20"],
        ["1.0-r0", "1.0-r1", "1.0_rc1-r0", "1.1-r0", "1.01-r0", "2.0a-r0", "2.0-r3"],
        ["1.0", "1.0-r2", "1.05-r0", "3.0-r0", "x1.0"],
    ),
    "PyPI": (
        ["PyPI"],
        ["0", "1.0", "1.0.0.post1", "1.1rc1", "1.1", "2.0", "2.0.1", "10.0"],
        ["1.0.0", "1.05", "0.9", "1.1a1", "3", "not a version"],
    ),
    "npm": (
        ["npm"],
        ["0", "1.0.0", "1.0.1", "1.1.0-beta.1", "1.1.0", "2.0.0", "2.0.0-rc.2"],
        ["1.0.5", "0.9.0", "3.0.0", "1.1.0-alpha", "v1.0.0", "01.0"],
    ),
}


def _event(kind: str, version: str) -> dict[str, str]:
    return {kind: version}


@st.composite
def records(draw: st.DrawFn, eco: str, ids: list[str]) -> list[OsvRecord]:
    releases, bounds, _ = UNIVERSES[eco]
    version = st.sampled_from(bounds)
    out = []
    for i, rid in enumerate(ids):
        entries = []
        for _ in range(draw(st.integers(1, 3))):
            ranges = []
            for _ in range(draw(st.integers(0, 2))):
                events = [_event("introduced", draw(version))]
                for _ in range(draw(st.integers(0, 3))):
                    kind = draw(st.sampled_from(["introduced", "fixed", "last_affected", "limit"]))
                    events.append(_event(kind, draw(st.sampled_from([*bounds, "*"]))))
                rtype = draw(st.sampled_from(["ECOSYSTEM", "ECOSYSTEM", "SEMVER", "GIT"]))
                ranges.append({"type": rtype, "events": events, "repo": "https://example"})
            entries.append(
                {
                    "package": {"ecosystem": draw(st.sampled_from(releases)), "name": "demo"},
                    "ranges": ranges,
                    "versions": draw(st.lists(version, max_size=3)),
                    "severity": [
                        {"type": "Ubuntu", "score": draw(st.sampled_from(["low", "high"]))}
                    ],
                }
            )
        aliases = draw(st.lists(st.sampled_from(["CVE-1", "CVE-2", *ids[:i]]), max_size=2))
        data: dict[str, Any] = {
            "id": rid,
            "modified": "2024-01-01T00:00:00Z",
            "aliases": sorted(set(aliases) - {rid}),
            "summary": f"summary of {rid}",
            "affected": entries,
        }
        out.append(parse_record(data))
    return out


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, list[OsvRecord], str, list[str]]:
    eco = draw(st.sampled_from(sorted(UNIVERSES)))
    n = draw(st.integers(1, 6))
    recs = draw(records(eco, [f"ADV-{i}" for i in range(n)]))
    releases, bounds, others = UNIVERSES[eco]
    target = draw(st.sampled_from([*releases, f"{eco}:12.4", f"{eco}:3.19.1"]))
    return target, recs, eco, [*bounds, *others]


@settings(max_examples=400, deadline=None)
@given(cases())
def test_a_name_table_answers_as_each_record_alone(
    case: tuple[str, list[OsvRecord], str, list[str]],
) -> None:
    target, recs, eco, versions = case
    compiled = [c for r in recs if (c := compile_record(r).get((eco, "demo")))]
    table = NameTable(compiled)
    for version in versions:
        expected = merge([a for r in recs if (a := affects(r, target, "demo", version))])
        assert table.vulnerabilities(target, version) == expected, version
        # Asked again: the answer worked out for the version's cell is the same one.
        assert table.vulnerabilities(target, version) == expected, version


def test_versions_in_one_cell_share_an_answer_and_a_fix() -> None:
    record = parse_record(
        {
            "id": "DEBIAN-CVE-1",
            "modified": "2024-01-01T00:00:00Z",
            "affected": [
                {
                    "package": {"ecosystem": "Debian:12", "name": "openssl"},
                    "ranges": [
                        {
                            "type": "ECOSYSTEM",
                            "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}],
                        }
                    ],
                }
            ],
        }
    )
    [compiled] = compile_record(record).values()
    table = NameTable([compiled])
    below = [table.vulnerabilities("Debian:12", v) for v in ("3.0.9-1", "3.0.11-1~deb12u1")]
    assert [[v.fixed_version for v in found] for found in below] == [["3.0.11-1~deb12u2"]] * 2
    assert table.vulnerabilities("Debian:12", "3.0.11-1~deb12u2") == ()
    assert table.vulnerabilities("Debian:12", "3.0.11-1") == ()  # ~ sorts before the end
    assert table.vulnerabilities("Debian:11", "3.0.9-1") == ()  # another release


def _components(hits: list[Affected]) -> list[set[str]]:
    """Records linked by id or alias, transitively: the reference merge groups by."""
    groups: list[set[str]] = []
    for hit in hits:
        names = {hit.id, *hit.aliases}
        touching = [g for g in groups if g & names]
        for g in touching:
            groups.remove(g)
            names |= g
        groups.append(names)
    return groups


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["GHSA-a", "GHSA-b", "PYSEC-1", "PYSEC-2", "DSA-1", "OSV-9"]),
            st.lists(st.sampled_from(["CVE-1", "CVE-2", "CVE-3", "GHSA-a", "PYSEC-2"]), max_size=2),
            st.sampled_from([None, "1.2", "1.10", "2.0"]),
            st.sampled_from(list(Severity)),
        ),
        max_size=8,
        unique_by=lambda t: t[0],
    )
)
def test_merge_joins_records_linked_by_id_or_alias_and_keeps_the_strongest_facts(
    drawn: list[tuple[str, list[str], str | None, Severity]],
) -> None:
    hits = [
        Affected(i, tuple(a), f"about {i}", fix, sev, "PyPI", "demo") for i, a, fix, sev in drawn
    ]
    merged = merge(hits)
    expected = _components(hits)
    assert sorted(sorted({v.id, *v.aliases}) for v in merged) == sorted(sorted(g) for g in expected)
    for v in merged:
        group = [h for h in hits if h.id in {v.id, *v.aliases}]
        assert v.id == min(h.id for h in group)
        assert v.severity == max((h.severity for h in group), key=lambda s: s.rank)
        fixes = [h.fixed_version for h in group if h.fixed_version]
        assert v.fixed_version == (max(fixes, key=Version) if fixes else None)
    assert [v.id for v in merged] == sorted(v.id for v in merged)
