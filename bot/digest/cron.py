"""Crontab lines as cron reads them, in a team's own time zone, through `croniter`.

The line is cron's (Vixie cron, as Debian ships it): five fields, day of week 0 or 7 = Sunday,
names in the month and day-of-week fields (`MON-FRI`, `sun`, `jan-mar`), lists, ranges with
steps (`1-5/2` is Mon, Wed, Fri; `*/2` is Sun, Tue, Thu, Sat). What cron refuses is refused
here with one readable line: a value out of range, a range running backwards (`5-1`), a step of
0 or after a single number (`1/2`), and croniter's extensions that cron does not have (seconds or
year fields, `L`, `W`, `#`, `?`, `H`, `@daily`), so a line that passes means the same to cron.

Day of month and day of week, as cron(5) says: when both are restricted a day matching either
fires (`0 9 13 * 5` is every Friday and every 13th); when either field starts with `*` (`*/2`
included, as in cron's own parser) a day must match both.

Daylight saving in the team's zone, as cron(8) does it for a change of less than three hours:
- A line with a fixed time (neither minute nor hour starts with `*`, like `30 2 * * *`): a time
  skipped when the clocks go forward fires at the change (02:30 on the spring-forward day fires
  at 03:00 local, once, however many skipped times matched); a time repeated when they go back
  fires once, on the first pass.
- A line with `*` in its minute or hour follows the new wall clock: skipped times do not fire,
  repeated times fire on both passes.
A 09:00 schedule is untouched by either change: it fires at 09:00 local on both sides.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

# (name, lowest, highest, names): cron's five fields and the names each takes.
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {name: i + 1 for i, name in enumerate(_MONTHS)}),
    ("day of week", 0, 7, {name: i for i, name in enumerate(_DAYS)}),
)
_ITEM = re.compile(r"(?P<start>\*|[0-9a-z]+)(?:-(?P<end>[0-9a-z]+))?(?:/(?P<step>[0-9a-z]+))?")

# How far back or forward a search looks before saying a line never fires (`0 9 31 2 *` is
# valid crontab that never fires, as cron accepts it).
_SEARCH_YEARS = 8
_LIMIT = timedelta(days=366 * _SEARCH_YEARS)
# More than any clock change: readings this far on the other side of the start can still fire
# on this side of it (the second pass of a repeated hour).
_SLACK = timedelta(hours=4)


def validate(cron: str) -> None:
    """Raise ValueError, one readable line, unless `cron` is a crontab line cron would run."""
    _parse(cron)


def next_fire(cron: str, timezone: str, after: datetime) -> datetime | None:
    """The first time `cron` fires in `timezone` strictly after `after`, in that zone; None if
    it never does (within years)."""
    fire = next(_fires(cron, timezone, after, forward=True), None)
    return None if fire is None else fire.astimezone(ZoneInfo(timezone))


def prev_fire(cron: str, timezone: str, at: datetime) -> datetime | None:
    """The latest time `cron` fired in `timezone` at or before `at`, in that zone; None if it
    never did (within years)."""
    fire = next(_fires(cron, timezone, at, forward=False), None)
    return None if fire is None else fire.astimezone(ZoneInfo(timezone))


def _fires(cron: str, timezone: str, start: datetime, *, forward: bool) -> Iterator[datetime]:
    """Fire times after `start` (forward) or at or before it (backward), nearest first.

    croniter walks the zone's wall clock (naive times, where it is exact); each matching
    wall-clock reading becomes its instants here, by cron(8)'s rules for skipped and repeated
    times. Around a change the instants of nearby readings come out of order (the second pass
    of 01:30 is later than the first pass of 01:45), so an instant found is given out only once
    no reading still to come can give a nearer one: readings later than `w` fire no earlier
    than the earliest instant whose reading is at least `w` (and backwards likewise)."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    fields = _parse(cron)
    zone = ZoneInfo(timezone)
    minute, hour, dom, _, dow = fields
    # cron(5): the day fields are ORed only when both are restricted; a field starting with `*`
    # (`*/2` too) makes it AND. croniter ORs whenever neither is exactly `*`.
    day_or = not (dom.startswith("*") or dow.startswith("*"))
    fixed_time = not (minute.startswith("*") or hour.startswith("*"))
    wall = start.astimezone(zone).replace(tzinfo=None)
    it = croniter(
        " ".join(fields),
        wall - _SLACK if forward else wall + _SLACK,
        day_or=day_or,
        max_years_between_matches=_SEARCH_YEARS,
    )
    pending: list[datetime] = []  # found, not yet known to be the nearest
    while True:
        try:
            w = it.get_next(datetime) if forward else it.get_prev(datetime)
        except CroniterBadDateError:
            w = None
        if w is None or abs(w - wall) > _LIMIT:
            yield from sorted(pending, reverse=not forward)
            return
        lo, hi, instants = _instants(w, zone, fixed_time)
        # Everything pending that no later reading can beat comes out now, nearest first.
        pending.sort(reverse=not forward)
        while pending and (pending[0] < lo if forward else pending[0] > hi):
            yield pending.pop(0)
        for t in instants:
            if (t > start if forward else t <= start) and t not in pending:
                pending.append(t)


def _instants(
    wall: datetime, zone: ZoneInfo, fixed_time: bool
) -> tuple[datetime, datetime, list[datetime]]:
    """When the wall-clock reading `wall` fires in `zone`, and bounds: the earliest instant whose
    reading is at least `wall` and the latest whose reading is at most `wall`."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:  # an ordinary reading
        return first, first, [first]
    if first > second:  # skipped: the clocks went forward over it
        change = _change(second, first, zone)
        return change, change, [change] if fixed_time else []
    # repeated: the clocks went back over it
    return first, second, [first] if fixed_time else [first, second]


def _change(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant the clocks went forward, to the second: after `before` (the old offset), at
    or before `after` (the new one)."""
    lo, hi = int(before.timestamp()), int(after.timestamp())
    offset = after.astimezone(zone).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == offset:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _parse(cron: str) -> list[str]:
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 crontab fields, got {len(fields)}")
    out = [_field(text.lower(), *spec) for text, spec in zip(fields, _FIELDS, strict=True)]
    try:
        croniter(" ".join(out))
    except (CroniterError, ValueError) as exc:  # a belt to the checks above
        raise ValueError(str(exc)) from None
    return out


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> str:
    for item in text.split(","):
        m = _ITEM.fullmatch(item)
        if m is None:
            raise ValueError(f"{name}: {item!r} is not a crontab value, range or step")
        start, end, step = m["start"], m["end"], m["step"]
        if start == "*":
            if end is not None:
                raise ValueError(f"{name}: {item!r}: `*` takes no range")
        else:
            first = _value(start, name, low, high, names)
            if end is not None and first > _value(end, name, low, high, names):
                raise ValueError(f"{name}: range {start}-{end} runs backwards")
            if end is None and step is not None:
                raise ValueError(f"{name}: {item!r}: a step needs `*` or a range before it")
        if step is not None and (not step.isdigit() or int(step) == 0):
            raise ValueError(f"{name}: step {step!r} must be a whole number above 0")
    return text


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    if text.isdigit():
        value = int(text)
    elif text in names:
        return names[text]
    else:
        raise ValueError(f"{name}: {text!r} is not a number" + (" or name" if names else ""))
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is out of range {low}-{high}")
    return value
