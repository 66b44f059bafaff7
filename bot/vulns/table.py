"""Every advisory of one package name laid out on that name's version line, for fast matching.

`Compiled.hit` (bot.vulns.osv) evaluates one record against one version: fine for a record,
slow for the tens of thousands a large inventory meets (a popular package carries hundreds).
A `NameTable` does that work once per name instead. Each scheme's bounds (every introduced,
fixed, last_affected and limit version, and every listed version) are sorted into a line; a
version then sits in a cell of it, `2i` strictly below bound `i` or `2i + 1` exactly at it.
An entry's answer is the same for every version in a cell, so each entry is stored as the
cells where it hits, and matching a package is one binary search per scheme followed by
integer comparisons. A cell met for the first time is worked out from the entries whose spans
hold it; an entry of a record sharing no id or alias with the others (nearly all) has its
answers made with the table, one per fix, so most of that is a bisect each. The answers are
`Compiled.hit`'s exactly (a property test holds them to it); a version the line's scheme
cannot parse falls back to `Compiled.hit`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, NamedTuple

from bot.model.findings import Severity
from bot.vulns.osv import Affected, Compiled, Entry, Fix, Ord, Range, covers, parsed_version
from bot.vulns.versions import scheme

#: Cells of one scheme's line where an entry hits: [first, end).
Span = tuple[str, int, int]


class Vulnerability(NamedTuple):
    """One vulnerability of a package version: the records naming it, linked by id or alias.
    (A tuple: a large inventory's new versions make thousands at once.)"""

    id: str
    aliases: tuple[str, ...]
    fixed_version: str | None
    severity: Severity
    summary: str


def merge(hits: Sequence[Affected]) -> tuple[Vulnerability, ...]:
    """Records that are the same vulnerability (linked by id or alias) become one.

    It takes the smallest id of the group, the worst severity, every other id and alias, and
    the highest fixed version (the one every database agrees is fixed).
    """
    owner: dict[str, int] = {}  # id or alias → the group holding it
    groups: list[list[Affected]] = []
    for hit in hits:
        names = (hit.id, *hit.aliases)
        joined = sorted({owner[n] for n in names if n in owner})
        if not joined:
            joined = [len(groups)]
            groups.append([])
        into = joined[0]
        groups[into].append(hit)
        for other in joined[1:]:  # this hit links groups that were apart until now
            groups[into] += groups[other]
            groups[other] = []
        for member in groups[into] if len(joined) > 1 else [hit]:
            for n in (member.id, *member.aliases):
                owner[n] = into
    merged = []
    for group in groups:
        if not group:
            continue
        lead = min(group, key=lambda h: h.id)
        ids = {h.id for h in group} | {a for h in group for a in h.aliases}
        merged.append(
            Vulnerability(
                id=lead.id,
                aliases=tuple(sorted(ids - {lead.id})),
                fixed_version=_highest_fix(lead, group),
                severity=max((h.severity for h in group), key=lambda s: s.rank),
                summary=lead.summary,
            )
        )
    return tuple(sorted(merged, key=lambda v: v.id))


def _highest_fix(lead: Affected, group: list[Affected]) -> str | None:
    fixed = [h.fixed_version for h in group if h.fixed_version]
    if len(fixed) <= 1:
        return fixed[0] if fixed else None
    keyed: list[tuple[Any, str]] = [(parsed_version(scheme(lead.ecosystem), v), v) for v in fixed]
    if any(k is None for k, _ in keyed):
        return lead.fixed_version or fixed[0]
    return str(max(keyed, key=lambda kv: kv[0])[1])


class _Line:
    """One scheme's bounds, sorted and distinct (equal in the scheme's order counts once)."""

    __slots__ = ("bounds",)

    def __init__(self, values: Iterable[Ord]) -> None:
        bounds: list[Ord] = []
        for v in sorted(values):
            if not bounds or bounds[-1] != v:
                bounds.append(v)
        self.bounds = bounds

    def cell(self, v: Ord) -> int:
        i = bisect_left(self.bounds, v)
        return 2 * i + 1 if i < len(self.bounds) and self.bounds[i] == v else 2 * i

    @property
    def end(self) -> int:
        """One past the last cell (the one above every bound)."""
        return 2 * len(self.bounds) + 1


@dataclass(frozen=True, slots=True)
class _Rule:
    """One record's entry for this name: where on the lines it hits, and its fixes there."""

    order: tuple[int, int]  # the record's place in the table, the entry's in the record
    record: Compiled
    entry: Entry
    spans: tuple[Span, ...]
    fixes: tuple[tuple[int, str, str], ...]  # (cell, scheme, text) in the record's order
    #: Set when the entry, hit alone in its record, is a vulnerability of its own: the record
    #: shares no id or alias with the name's other records, and the entry's fixes all lie on
    #: this line ("" when it has none). `alone` then answers for it.
    alone_on: str | None
    only_entry: bool  # the record has no other entry for this name: it is always hit alone
    #: The fixes' cells ascending (equal ones in the record's order), and what `alone` answers
    #: below each (the fix's text) and above them all (no fix), made once, with the table.
    fix_cells: tuple[int, ...]
    answers: tuple[Vulnerability, ...]

    def alone(self, cells: dict[str, int]) -> Vulnerability:
        """What `merge` makes of the record hit at `cells` by this entry alone: the lowest fix
        above the cells is one bisect away."""
        if not self.alone_on:
            return self.answers[0]
        return self.answers[bisect_right(self.fix_cells, cells[self.alone_on])]


class _Spans:
    """The spans of one release's rules on one line, for finding those around a cell."""

    __slots__ = ("by_end", "by_start", "ends", "starts")

    def __init__(self, spans: list[tuple[int, int, _Rule]]) -> None:
        self.by_start = sorted(spans, key=lambda s: s[0])
        self.starts = [s[0] for s in self.by_start]
        self.by_end = sorted(spans, key=lambda s: s[1])
        self.ends = [s[1] for s in self.by_end]

    def around(self, cell: int) -> list[_Rule]:
        """Rules with a span holding `cell`: filtered from whichever side is shorter, spans
        starting at or below it or those ending above it."""
        started = bisect_right(self.starts, cell)
        ended = bisect_right(self.ends, cell)
        if started <= len(self.ends) - ended:
            return [rule for _, end, rule in self.by_start[:started] if end > cell]
        return [rule for start, _, rule in self.by_end[ended:] if start <= cell]


def _bounds(entry: Entry) -> Iterable[tuple[str, Ord]]:
    yield from ((entry.scheme, k) for k in entry.version_keys)
    for rng in entry.ranges:
        yield from ((rng.scheme, b) for b, _ in rng.events if b is not None)
        yield from ((rng.scheme, b) for b in rng.limits if b is not None)
        yield from ((rng.scheme, b) for b, _ in rng.fixes)


def _on_line(rng: Range, line: _Line) -> Range:
    """The range with each bound replaced by its cell: `contains` then takes a cell."""
    return Range(
        rng.scheme,
        tuple((None if b is None else line.cell(b), kind) for b, kind in rng.events),
        tuple(None if b is None else line.cell(b) for b in rng.limits),
        rng.evaluable,
        tuple((line.cell(b), text) for b, text in rng.fixes),
    )


def _range_spans(rng: Range, line: _Line) -> list[Span]:
    """Where the range hits: its answer only changes at its own bounds, so one probe cell per
    stretch between them (and each bound's own cell) decides the whole stretch."""
    if not rng.evaluable:
        return []
    cells = _on_line(rng, line)
    own = sorted(
        {b for b, _ in cells.events if b is not None} | {b for b in cells.limits if b is not None}
    )
    stretches: list[tuple[int, int]] = []
    start = 0
    for b in own:
        if start < b:
            stretches.append((start, b))
        stretches.append((b, b + 1))
        start = b + 1
    stretches.append((start, line.end))
    spans: list[Span] = []
    for first, end in stretches:
        if cells.contains(first):
            if spans and spans[-1][2] == first:
                spans[-1] = (rng.scheme, spans[-1][1], end)
            else:
                spans.append((rng.scheme, first, end))
    return spans


def _rule(
    order: tuple[int, int], record: Compiled, entry: Entry, lines: dict[str, _Line], linked: bool
) -> _Rule:
    spans: list[Span] = []
    if entry.version_keys:
        line = lines[entry.scheme]
        spans += [
            (entry.scheme, c, c + 1) for c in sorted({line.cell(k) for k in entry.version_keys})
        ]
    fixes: list[tuple[int, str, str]] = []
    for rng in entry.ranges:
        spans += _range_spans(rng, lines[rng.scheme])
        fixes += [(lines[rng.scheme].cell(b), rng.scheme, text) for b, text in rng.fixes]
    fix_lines = {s for _, s, _ in fixes}
    alone_on = next(iter(fix_lines), "") if len(fix_lines) <= 1 and not linked else None
    ascending = sorted(fixes, key=lambda f: f[0])
    answers: tuple[Vulnerability, ...] = ()
    if alone_on is not None:
        aliases = tuple(sorted(set(record.aliases) - {record.id}))
        answers = tuple(
            Vulnerability(record.id, aliases, fixed or None, entry.severity, record.summary)
            for fixed in [*(t for _, _, t in ascending), None]
        )
    return _Rule(
        order,
        record,
        entry,
        tuple(spans),
        tuple(fixes),
        alone_on=alone_on,
        only_entry=len(record.entries) == 1,
        fix_cells=tuple(c for c, _, _ in ascending),
        answers=answers,
    )


class NameTable:
    """The advisories of one (base ecosystem, normalised name), ready to match any version."""

    def __init__(self, records: Sequence[Compiled]) -> None:
        self._records = tuple(records)
        values: dict[str, list[Ord]] = {}
        for record in records:
            for entry in record.entries:
                # Every scheme the entry needs has a line, if only of one cell: a version that
                # one of them cannot parse goes the slow way, where listed texts are compared.
                if entry.versions:
                    values.setdefault(entry.scheme, [])
                for rng in entry.ranges:
                    values.setdefault(rng.scheme, [])
                for scheme_name, bound in _bounds(entry):
                    values.setdefault(scheme_name, []).append(bound)
        self._lines = {s: _Line(vs) for s, vs in values.items()}
        self._known: dict[tuple[str, tuple[int, ...]], tuple[Vulnerability, ...]] = {}
        named = Counter(n for r in records for n in {r.id, *r.aliases})
        #: Spans by the ecosystem their entry names (`Debian:12`: a release is checked once),
        #: then by line.
        spans: dict[str, dict[str, list[tuple[int, int, _Rule]]]] = {}
        for i, record in enumerate(records):
            linked = any(named[n] > 1 for n in {record.id, *record.aliases})
            for j, entry in enumerate(record.entries):
                rule = _rule((i, j), record, entry, self._lines, linked)
                lines = spans.setdefault(entry.ecosystem, {})
                for scheme_name, start, end in rule.spans:
                    lines.setdefault(scheme_name, []).append((start, end, rule))
        self._spans = {
            eco: {s: _Spans(found) for s, found in lines.items()} for eco, lines in spans.items()
        }

    def __len__(self) -> int:
        return len(self._records)

    def vulnerabilities(self, ecosystem: str, version: str) -> tuple[Vulnerability, ...]:
        """The vulnerabilities of `version` in `ecosystem` (with its release): the records
        that hit it, those linked by id or alias merged. Worked out once per cell."""
        cells: dict[str, int] = {}
        for scheme_name, line in self._lines.items():
            v = parsed_version(scheme_name, version)
            if v is None:  # only a listed version's text could match: evaluate one by one
                return merge([a for r in self._records if (a := r.hit(ecosystem, version))])
            cells[scheme_name] = line.cell(v)
        where = (ecosystem, tuple(cells.values()))
        known = self._known.get(where)
        if known is None:
            known = self._known[where] = self._work_out(ecosystem, cells)
        return known

    def _work_out(self, ecosystem: str, cells: dict[str, int]) -> tuple[Vulnerability, ...]:
        """`merge` of the records hitting the cells. Nearly every one is hit by one entry and
        shares no id or alias with the name's other records: its answer was made with the
        table, and only the others are merged."""
        found: list[Vulnerability] = []
        by_record: dict[int, list[_Rule]] = {}
        for rule in self._rules_at(ecosystem, cells):
            if rule.alone_on is not None and rule.only_entry:
                found.append(rule.alone(cells))
            else:
                by_record.setdefault(rule.order[0], []).append(rule)
        rest: list[Affected] = []
        for _, rules in sorted(by_record.items()):
            if len(rules) == 1 and rules[0].alone_on is not None:
                found.append(rules[0].alone(cells))
            else:
                rest.append(rules[0].record.affected(_group(rules, cells)))
        return tuple(sorted([*found, *merge(rest)], key=_by_id))

    def _rules_at(self, ecosystem: str, cells: dict[str, int]) -> Iterable[_Rule]:
        """Each rule with a span holding the version at `cells` in `ecosystem`, once."""
        found: dict[tuple[int, int], _Rule] = {}
        for entry_ecosystem, lines in self._spans.items():
            if covers(entry_ecosystem, ecosystem):
                for scheme_name, spans in lines.items():
                    found.update((r.order, r) for r in spans.around(cells[scheme_name]))
        return found.values()


def _group(rules: list[_Rule], cells: dict[str, int]) -> list[tuple[Entry, list[Fix]]]:
    """A record's entries hitting the cells, in its order, each with its fixes above them."""
    return [
        (rule.entry, [(c, s, t) for c, s, t in rule.fixes if c > cells[s]])
        for rule in sorted(rules, key=lambda r: r.order)
    ]


_by_id = attrgetter("id")
