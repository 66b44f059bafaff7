"""Version order per ecosystem: dpkg against the real dpkg, PEP 440 against its written-out
rules and packaging, and the other schemes against hand-checked examples."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from packaging.version import Version
from univers.versions import AlpineLinuxVersion

from bot.vulns.versions import (
    VersionError,
    base_ecosystem,
    compare,
    ecosystem_release,
    is_valid,
    scheme,
    sort_key,
)

PROPERTY = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)

# --- dpkg against dpkg ------------------------------------------------------------------------

_DEB_CHARS = "0123456789" * 3 + "abzAZ" + ".+~" * 2


@st.composite
def debian_versions(draw: st.DrawFn) -> str:
    epoch = draw(st.sampled_from(["", "", "", "0:", "1:", "2:", "10:"]))
    upstream = draw(st.sampled_from("0123456789")) + draw(st.text(alphabet=_DEB_CHARS, max_size=8))
    revision = draw(
        st.one_of(
            st.just(""),
            st.text(alphabet=_DEB_CHARS, min_size=1, max_size=6).map(lambda r: "-" + r),
        )
    )
    if revision and draw(st.booleans()):  # an upstream may hold hyphens when a revision follows
        upstream += "-" + draw(st.text(alphabet="0123456789a.", min_size=1, max_size=3))
    return epoch + upstream + revision


@st.composite
def debian_pairs(draw: st.DrawFn) -> tuple[str, str]:
    a = draw(debian_versions())
    how = draw(st.sampled_from(["independent", "suffix", "prefix", "same"]))
    if how == "independent":
        return a, draw(debian_versions())
    if how == "suffix":  # near misses: "1.0" against "1.0~rc1", "1.0+b1", "1.0a"
        return a, a + draw(st.sampled_from(["~", "~rc1", "+b1", "a", ".0", "0", "-1", "~~"]))
    if how == "prefix" and len(a) > 2:
        return a, a[: draw(st.integers(1, len(a) - 1))]
    return a, a


def _dpkg(a: str, op: str, b: str) -> bool | None:
    """dpkg's answer, or None when dpkg finds either version malformed (it warns on stderr)."""
    run = subprocess.run(
        ["dpkg", "--compare-versions", a, op, b], capture_output=True, text=True, check=False
    )
    if run.stderr.strip() or run.returncode not in (0, 1):
        return None
    return run.returncode == 0


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg")
@PROPERTY
@given(debian_pairs())
def test_dpkg_order_agrees_with_dpkg(pair: tuple[str, str]) -> None:
    a, b = pair
    assume(is_valid("Debian", a) and is_valid("Debian", b))
    lt = _dpkg(a, "lt", b)
    assume(lt is not None)
    expected = -1 if lt else (1 if _dpkg(a, "gt", b) else 0)
    assert compare("Debian", a, b) == expected
    assert compare("Ubuntu:22.04:LTS", b, a) == -expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0~rc1", "1.0", -1),
        ("1.0", "1.0+b1", -1),
        ("1:0.9", "2.0", 1),
        ("1.0", "1.0-0", 0),
        ("2.36.1-8+deb12u1", "2.36.1-8", 1),
        ("1.2.1-2.2+wheezy2", "1.2.1-2.2+wheezy3", -1),
        ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12", -1),
    ],
)
def test_dpkg_examples(a: str, b: str, expected: int) -> None:
    assert compare("Debian:12", a, b) == expected


@pytest.mark.parametrize("bad", ["", "abc", "1.0-", ":1.0", "1.0 2", "a1.0"])
def test_invalid_debian_versions_raise(bad: str) -> None:
    with pytest.raises(VersionError):
        compare("Debian", bad, "1.0")


# --- PEP 440 against packaging ----------------------------------------------------------------


def _pep440_parts(draw: st.DrawFn) -> dict[str, str]:
    """A PEP 440 version drawn as its parts, each already spelled (one of the spellings the
    PEP allows)."""
    nums = st.integers(0, 12).map(str)
    parts = dict.fromkeys(("epoch", "pre", "post", "dev", "local"), "")
    parts["release"] = ".".join(draw(st.lists(nums, min_size=1, max_size=4)))
    if draw(st.booleans()):
        parts["epoch"] = f"{draw(st.integers(1, 2))}!"
    if draw(st.booleans()):
        pre = draw(st.sampled_from(["a", "b", "rc", "alpha", "beta", "c", "pre", "preview"]))
        parts["pre"] = draw(st.sampled_from(["", ".", "-"])) + pre + draw(nums)
    if draw(st.booleans()):
        parts["post"] = draw(st.sampled_from([".post", "-post", "post", "-", ".rev"])) + draw(nums)
    if draw(st.booleans()):
        parts["dev"] = ".dev" + draw(nums)
    if draw(st.integers(0, 4)) == 0:
        parts["local"] = "+" + draw(st.sampled_from(["ubuntu1", "local.7", "abc"]))
    return parts


def _pep440_text(draw: st.DrawFn, parts: dict[str, str]) -> str:
    text = "".join(parts[k] for k in ("epoch", "release", "pre", "post", "dev", "local"))
    if draw(st.integers(0, 4)) == 0:
        text = "v" + text.upper()
    return text


@st.composite
def pep440_versions(draw: st.DrawFn) -> str:
    return _pep440_text(draw, _pep440_parts(draw))


@st.composite
def pep440_pairs(draw: st.DrawFn) -> tuple[str, str]:
    """Two versions: half the time unrelated, half the time the same but for one part (a
    local label, a pre-, post- or dev-release, the epoch, trailing zeros), where orders differ."""
    a = _pep440_parts(draw)
    if draw(st.booleans()):
        return _pep440_text(draw, a), draw(pep440_versions())
    b = dict(a)
    part = draw(st.sampled_from(["epoch", "release", "pre", "post", "dev", "local"]))
    if part == "release":
        b["release"] = a["release"] + draw(st.sampled_from([".0", ".0.0", ".1"]))
    else:
        b[part] = _pep440_parts(draw)[part]
    return _pep440_text(draw, a), _pep440_text(draw, b)


# PEP 440's own reading of a version (its appendix B regex) and its ordering rules, written
# out here: the bot orders PyPI versions with packaging's `Version`, so comparing the bot with
# `packaging` alone would check packaging against itself.
_PEP440 = re.compile(
    r"""v?(?:(?P<epoch>[0-9]+)!)?(?P<release>[0-9]+(?:\.[0-9]+)*)
    (?P<pre>[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?
    (?P<post>(?:-(?P<post_n1>[0-9]+))|(?:[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?))?
    (?P<dev>[-_.]?dev[-_.]?(?P<dev_n>[0-9]+)?)?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?""",
    re.VERBOSE | re.IGNORECASE,
)
_PRE_ORDER = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}
_BEFORE, _AFTER = (-1,), (1_000_000,)  # below and above any number a strategy draws


def pep440_spec_key(text: str) -> tuple[Any, ...]:
    """PEP 440's "Summary of permitted suffixes and relative ordering": epoch; release with
    trailing zeros dropped; a dev-only release before the pre-releases; pre (a < b < rc), then
    none; no post, then post; dev, then none; no local, then local, segment by segment,
    numbers above words."""
    m = _PEP440.fullmatch(text.strip())
    assert m, text
    release = [int(n) for n in m["release"].split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    pre = (_PRE_ORDER[m["pre_l"].lower()], int(m["pre_n"] or 0)) if m["pre"] else None
    post = None if not m["post"] else int(m["post_n1"] or m["post_n2"] or 0)
    dev = int(m["dev_n"] or 0) if m["dev"] else None
    if pre is None:
        pre = _BEFORE if dev is not None and post is None else _AFTER
    local = (
        ()
        if m["local"] is None
        else tuple(
            (1, int(seg), "") if seg.isdigit() else (0, 0, seg.lower())
            for seg in re.split(r"[-_.]", m["local"])
        )
    )
    return (
        int(m["epoch"] or 0),
        tuple(release),
        pre,
        _BEFORE if post is None else (post,),
        _AFTER if dev is None else (dev,),
        (0,) if m["local"] is None else (1, local),
    )


def _sign(x: Any, y: Any) -> int:
    return -1 if x < y else (1 if x > y else 0)


@PROPERTY
@given(pep440_pairs())
def test_pep440_order_agrees_with_packaging(pair: tuple[str, str]) -> None:
    """The bot's PyPI order, by `compare` and by `sort_key`, is PEP 440's (written out above)
    and packaging's."""
    a, b = pair
    expected = _sign(pep440_spec_key(a), pep440_spec_key(b))
    assert compare("PyPI", a, b) == expected
    assert compare("pypi", b, a) == -expected
    ka, kb = sort_key("PyPI", a), sort_key("PyPI", b)
    assert (ka < kb, ka == kb, ka > kb) == (expected < 0, expected == 0, expected > 0)
    assert _sign(Version(a), Version(b)) == expected


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("1.0.dev1", "1.0a1"),
        ("1.0a1", "1.0b1"),
        ("1.0b1", "1.0rc1"),
        ("1.0rc1", "1.0"),
        ("1.0", "1.0+local"),
        ("1.0+abc", "1.0+7"),
        ("1.0", "1.0.post1"),
        ("1.0-1", "1.0.post2"),
        ("1.0.post1.dev1", "1.0.post1"),
        ("1.0a1.post1", "1.0a2.dev1"),
        ("1.2", "1.10"),
        ("2.0", "1!0.1"),
    ],
)
def test_pep440_spec_examples(lower: str, higher: str) -> None:
    assert pep440_spec_key(lower) < pep440_spec_key(higher)
    assert compare("PyPI", lower, higher) == -1


@settings(max_examples=100, deadline=None)
@given(st.lists(pep440_versions(), min_size=2, max_size=8))
def test_pep440_sorting_matches_packaging(versions: list[str]) -> None:
    ours = sorted(versions, key=lambda v: sort_key("PyPI", v))
    assert [Version(v) for v in ours] == sorted(Version(v) for v in versions)


def test_pep440_spellings_and_errors() -> None:
    assert compare("PyPI", "1.0", "1.0.0") == 0
    assert compare("PyPI", "1.0RC1", "1.0rc1") == 0
    assert compare("PyPI", "1.0.dev1", "1.0a1") == -1
    assert compare("PyPI", "1.0.post1", "1.0") == 1
    assert compare("pypi", "0.12.01", "0.12.1") == 0  # a real entry in PYSEC-2018-28
    with pytest.raises(VersionError):
        compare("PyPI", "2004d", "1.0")


# --- apk --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.2.3-r4", "1.2.3-r10", -1),
        ("1.2.3_rc1", "1.2.3", -1),
        ("1.2.3_rc1", "1.2.3_rc2", -1),
        ("1.2.3_alpha1", "1.2.3_beta1", -1),
        ("1.2.3_beta2", "1.2.3_pre1", -1),
        ("1.2.3_pre1", "1.2.3_rc1", -1),
        ("1.2.3_p1", "1.2.3", 1),
        ("1.2.3_p1", "1.2.3-r9", 1),
        ("1.2.3_git20240101", "1.2.3", 1),
        ("1.2.3_git20240101", "1.2.3_p1", -1),
        ("1.2.3a", "1.2.3", 1),
        ("1.2.3a", "1.2.4", -1),
        ("1.2.10", "1.2.9", 1),
        ("1.0", "1.0.0", -1),
        ("1.0", "1.0-r0", -1),
        ("3.1.4-r5", "3.1.4-r6", -1),
        ("1.36.1-r15", "1.36.1-r15", 0),
        ("1.0~abc123-r1", "1.0-r1", 1),
    ],
)
def test_apk_examples(a: str, b: str, expected: int) -> None:
    assert compare("Alpine:v3.19", a, b) == expected
    assert compare("Alpine", b, a) == -expected


@pytest.mark.parametrize("bad", ["", "r1", "1.0-x", "1.0_foo", "1.0-r", "1.0ab", "1..0", "1.0.a"])
def test_invalid_apk_versions_raise(bad: str) -> None:
    with pytest.raises(VersionError):
        compare("Alpine", bad, "1.0")


@st.composite
def gentoo_like(draw: st.DrawFn) -> str:
    """apk versions on which Gentoo's order (univers) and apk's agree: no leading zeros, no
    "-r0" (apk: newer than no revision) and suffixes always numbered (Gentoo reads "_p" as
    "_p0", apk orders "_p1" before "_p_p")."""
    parts = draw(st.lists(st.integers(0, 30), min_size=1, max_size=4))
    text = ".".join(str(p) for p in parts)
    if draw(st.integers(0, 3)) == 0:
        text += draw(st.sampled_from("abz"))
    for _ in range(draw(st.integers(0, 2))):
        suffix = draw(st.sampled_from(["alpha", "beta", "pre", "rc", "p"]))
        text += f"_{suffix}{draw(st.sampled_from(['1', '2', '10']))}"
    if draw(st.booleans()):
        text += f"-r{draw(st.integers(1, 12))}"
    return text


@PROPERTY
@given(gentoo_like(), gentoo_like())
def test_apk_agrees_with_univers_where_both_apply(a: str, b: str) -> None:
    ua, ub = AlpineLinuxVersion(a), AlpineLinuxVersion(b)
    expected = -1 if ua < ub else (1 if ua > ub else 0)
    assert compare("Alpine", a, b) == expected


@PROPERTY
@given(gentoo_like(), gentoo_like(), gentoo_like())
def test_apk_order_is_a_total_order(a: str, b: str, c: str) -> None:
    assert compare("Alpine", a, b) == -compare("Alpine", b, a)
    if compare("Alpine", a, b) <= 0 and compare("Alpine", b, c) <= 0:
        assert compare("Alpine", a, c) <= 0


# --- rpm, semver, Maven, fallback -------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0~rc1", "1.0", -1),
        ("1.0", "1.0^post1", -1),
        ("1:1.0", "2.0", 1),
        ("0:2.0", "2.0", 0),
        ("1.0-1.el9", "1.0-2.el9", -1),
        ("1.0-10.el9", "1.0-9.el9", 1),
        ("1.0a", "1.0.1", -1),
        ("2.4.57-5.el9", "2.4.57-5.el9_1.1", -1),
    ],
)
@pytest.mark.parametrize("ecosystem", ["Red Hat", "AlmaLinux:9", "Rocky Linux:9", "openSUSE"])
def test_rpm_examples(ecosystem: str, a: str, b: str, expected: int) -> None:
    assert compare(ecosystem, a, b) == expected


def test_semver_precedence_chain_from_the_spec() -> None:
    chain = [
        "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
        "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0",
    ]  # fmt: skip
    for ecosystem in ("npm", "crates.io", "SEMVER", "Go"):
        assert sorted(reversed(chain), key=lambda v: sort_key(ecosystem, v)) == chain
        for lo, hi in itertools.pairwise(chain):
            assert compare(ecosystem, lo, hi) == -1


def test_semver_build_metadata_and_go_prefix() -> None:
    assert compare("npm", "1.0.0+build.1", "1.0.0+build.2") == 0
    assert compare("Go", "v1.2.3", "1.2.3") == 0
    assert compare("Go", "v2.0.0+incompatible", "v2.0.0") == 0
    assert compare("Go", "v0.0.0-20220906165146-f3363e06e74c", "v0.0.0") == -1
    assert compare("Go", "1.19.0-0", "1.19.0") == -1
    assert compare("Go", "1.18.6", "1.19.0-0") == -1
    for bad in ("", "abc", "1.2.3.4", "01.2.3", "1.2.3-"):
        with pytest.raises(VersionError):
            compare("npm", bad, "1.0.0")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0-SNAPSHOT", "1.0", -1),
        ("1.0.RELEASE", "1.0", 0),
        ("5.3.20.RELEASE", "5.3.21", -1),
        ("1.0.Final", "1.0", 0),
        ("1.0-alpha-1", "1.0-beta-1", -1),
        ("1.0-beta-1", "1.0-rc1", -1),
        ("1.0-rc1", "1.0", -1),
        ("1.0", "1.0-sp1", -1),
        ("1.0", "1.0.0", 0),
        ("2.17.0", "2.17.1", -1),
        ("2.9.10.8", "2.10.0", -1),
    ],
)
def test_maven_examples(a: str, b: str, expected: int) -> None:
    assert compare("Maven", a, b) == expected


def test_other_ecosystems_fall_back_to_natural_order() -> None:
    assert scheme("RubyGems") == "natural" and scheme("SomethingNew") == "natural"
    assert compare("RubyGems", "1.10", "1.9") == 1
    assert compare("Hackage", "v2.0", "2.0") == 0
    assert sorted(["10.0", "9.1", "9.10", "9.2"], key=lambda v: sort_key("CRAN", v)) == [
        "9.1", "9.2", "9.10", "10.0",
    ]  # fmt: skip
    with pytest.raises(VersionError):
        compare("RubyGems", "  ", "1.0")


def test_ecosystem_names_and_releases() -> None:
    assert base_ecosystem("Debian:12") == "Debian"
    assert base_ecosystem("Alpine:v3.19") == "Alpine"
    assert base_ecosystem("Ubuntu:22.04:LTS") == "Ubuntu"
    assert base_ecosystem("Red Hat:enterprise_linux:9::appstream") == "Red Hat"
    assert base_ecosystem("Maven:https://maven.google.com") == "Maven"
    assert base_ecosystem("pypi") == "PyPI" and base_ecosystem("NPM") == "npm"
    assert ecosystem_release("Ubuntu:Pro:18.04:LTS") == "Pro:18.04:LTS"
    assert ecosystem_release("Debian") is None
    assert [scheme(e) for e in ("Debian:12", "Alpine:v3.19", "Rocky Linux:9", "Go")] == [
        "dpkg", "apk", "rpm", "semver",
    ]  # fmt: skip


def test_keys_of_different_schemes_do_not_mix() -> None:
    with pytest.raises(TypeError):
        _ = sort_key("PyPI", "1.0") < sort_key("npm", "1.0.0")
    assert sort_key("PyPI", "1.0") == sort_key("PyPI", "1.0.0")
    assert sort_key("PyPI", "1.0") != "1.0"
