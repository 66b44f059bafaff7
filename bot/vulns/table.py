"""Every advisory of one package name laid out on that name's version line, for fast matching.

`Compiled.hit` (bot.vulns.osv) evaluates one record against one version: fine for a record,
slow for the tens of thousands a large inventory meets (a popular package carries hundreds).
A `NameTable` does that work once per name instead. Each scheme's bounds (every introduced,
fixed, last_affected and limit version, and every listed version) are sorted into a line; a
version then sits in a cell of it, `2i` strictly below bound `i` or `2i + 1` exactly at it.
An entry's answer is the same for every version in a cell, so each entry is stored as the
cells where it hits, and matching a package is one binary search per scheme followed by
integer comparisons. The answers are `Compiled.hit`'s exactly (a property test holds them to
it); a version the line's scheme cannot parse falls back to `Compiled.hit`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.findings import Severity
from bot.vulns.osv import Affected, Compiled, Entry, Fix, Ord, Range, covers, parsed_version
from bot.vulns.versions import scheme

#: Cells of one scheme's line where an entry hits: [first, end).
Span = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class Vulnerability:
    """One vulnerability of a package version: the records naming it, linked by id or alias."""

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


def _rule(order: tuple[int, int], record: Compiled, entry: Entry, lines: dict[str, _Line]) -> _Rule:
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
    return _Rule(order, record, entry, tuple(spans), tuple(fixes))


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
        #: Spans by the ecosystem their entry names (`Debian:12`: a release is checked once),
        #: then by line.
        spans: dict[str, dict[str, list[tuple[int, int, _Rule]]]] = {}
        for i, record in enumerate(records):
            for j, entry in enumerate(record.entries):
                rule = _rule((i, j), record, entry, self._lines)
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
            known = self._known[where] = merge(self.hits(ecosystem, cells))
        return known

    def hits(self, ecosystem: str, cells: dict[str, int]) -> list[Affected]:
        """Every record hitting the version at `cells` in `ecosystem`, in record order."""
        found: dict[tuple[int, int], _Rule] = {}
        for entry_ecosystem, lines in self._spans.items():
            if covers(entry_ecosystem, ecosystem):
                for scheme_name, spans in lines.items():
                    found.update((r.order, r) for r in spans.around(cells[scheme_name]))
        return self._answers([found[k] for k in sorted(found)], cells)

    @staticmethod
    def _answers(found: list[_Rule], cells: dict[str, int]) -> list[Affected]:
        answers: list[Affected] = []
        i = 0
        while i < len(found):
            record, group = found[i].record, []
            while i < len(found) and found[i].record is record:
                rule = found[i]
                above: list[Fix] = [(c, s, t) for c, s, t in rule.fixes if c > cells[s]]
                group.append((rule.entry, above))
                i += 1
            answers.append(record.affected(group))
        return answers
