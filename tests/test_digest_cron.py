"""The digest's crontab line, read as cron reads it: day-of-week numbering (0 and 7 = Sunday),
ranges with steps, names, lists, cron's day-of-month/day-of-week OR rule, the last fire time,
daylight saving in the team's zone, and what config validation accepts and refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from pydantic import ValidationError

from bot.config import Digest
from bot.digest.cron import next_fire, prev_fire
from handlers.cli import main

NY = "America/New_York"
BERLIN = "Europe/Berlin"


def fires(cron: str, timezone: str, after: datetime, count: int) -> list[datetime]:
    """The next `count` fire times, in UTC: a time in a repeated hour compares unequal to every
    time in another zone (PEP 495), and arithmetic on a zone's times is wall-clock arithmetic."""
    out: list[datetime] = []
    t = after
    for _ in range(count):
        fire = next_fire(cron, timezone, t)
        assert fire is not None
        out.append(fire.astimezone(UTC))
        t = fire
    return out


def prev(cron: str, timezone: str, at: datetime) -> datetime | None:
    fire = prev_fire(cron, timezone, at)
    return None if fire is None else fire.astimezone(UTC)


def weekdays(cron: str) -> set[str]:
    """The days of week `cron` fires on over two weeks (from Sunday 2026-03-01, UTC)."""
    start = datetime(2026, 3, 1, tzinfo=UTC) - timedelta(seconds=1)
    end = start + timedelta(days=14)
    return {f.strftime("%a") for f in fires(cron, "UTC", start, 30) if f < end}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


@pytest.mark.parametrize(
    ("dow", "days"),
    [
        ("1-5/2", {"Mon", "Wed", "Fri"}),  # every weekday, before
        ("*/2", {"Sun", "Tue", "Thu", "Sat"}),  # refused, before
        ("*/3", {"Sun", "Wed", "Sat"}),
        ("0", {"Sun"}),
        ("7", {"Sun"}),
        ("0,7", {"Sun"}),
        ("5-7", {"Fri", "Sat", "Sun"}),
        ("0-7", {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}),
        ("MON-FRI", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("mon-fri/2", {"Mon", "Wed", "Fri"}),
        ("sun", {"Sun"}),
        ("SAT", {"Sat"}),
        ("mon,wed,fri", {"Mon", "Wed", "Fri"}),
        ("1,3-4", {"Mon", "Wed", "Thu"}),
        ("tue,7", {"Tue", "Sun"}),
    ],
)
def test_day_of_week_uses_crons_numbering(dow: str, days: set[str]) -> None:
    assert weekdays(f"0 9 * * {dow}") == days


def test_steps_in_a_range_fire_at_the_right_local_times() -> None:
    got = fires("0 9 * * 1-5/2", NY, datetime(2026, 4, 1, tzinfo=UTC), 4)
    assert got == [
        utc(2026, 4, 1, 13),
        utc(2026, 4, 3, 13),
        utc(2026, 4, 6, 13),
        utc(2026, 4, 8, 13),
    ]
    fire = next_fire("0 9 * * 1-5/2", NY, utc(2026, 4, 1))
    assert fire is not None and fire.tzinfo == ZoneInfo(NY)  # in the team's zone


def test_steps_and_lists_in_minute_and_hour() -> None:
    got = fires("0,30 8-12/2 * * *", "UTC", utc(2026, 4, 1), 7)
    assert [f.strftime("%d %H:%M") for f in got] == [
        "01 08:00", "01 08:30", "01 10:00", "01 10:30", "01 12:00", "01 12:30", "02 08:00",
    ]  # fmt: skip


def test_month_names_and_ranges() -> None:
    got = fires("0 9 1 JAN-MAR,dec *", "UTC", utc(2026, 1, 1, 12), 4)
    assert [f.month for f in got] == [2, 3, 12, 1]


def _april_days(cron: str) -> list[int]:
    start = datetime(2026, 4, 1, tzinfo=UTC) - timedelta(seconds=1)
    return [f.day for f in fires(cron, "UTC", start, 40) if f.month == 4 and f.year == 2026]


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # April 2026: Fridays 3, 10, 17, 24; Mondays 6, 13, 20, 27.
    assert _april_days("0 9 13 * 5") == [3, 10, 13, 17, 24]  # the 13th or a Friday
    assert _april_days("0 9 1-31 * 5") == list(range(1, 31))  # restricted in name: still OR
    assert _april_days("0 9 13 * *") == [13]
    assert _april_days("0 9 * * 5") == [3, 10, 17, 24]


def test_a_field_starting_with_a_star_makes_it_and_as_in_cron() -> None:
    # cron's parser takes `*/2` as a star: the days must match both fields.
    assert _april_days("0 9 */2 * 1") == [13, 27]  # odd days that are Mondays
    assert _april_days("0 9 1-31/2 * 1") == [
        1, 3, 5, 6, 7, 9, 11, 13, 15, 17, 19, 20, 21, 23, 25, 27, 29,
    ]  # fmt: skip
    got = fires("0 9 13 * */2", "UTC", utc(2026, 1, 1), 3)  # a 13th on Sun/Tue/Thu/Sat
    assert [f.date().isoformat() for f in got] == ["2026-01-13", "2026-06-13", "2026-08-13"]


def test_prev_fire_is_at_or_before() -> None:
    cron = "0 9 * * 1-5/2"
    assert prev(cron, NY, utc(2026, 4, 3, 13)) == utc(2026, 4, 3, 13)  # exactly then
    assert prev(cron, NY, utc(2026, 4, 3, 12, 59, 59)) == utc(2026, 4, 1, 13)
    assert prev(cron, NY, utc(2026, 4, 5, 12)) == utc(2026, 4, 3, 13)  # Sunday: Friday's
    assert prev("0 9 * * */2", NY, utc(2026, 4, 6, 12)) == utc(2026, 4, 5, 13)  # Sunday
    assert prev("0 9 * * 7", BERLIN, utc(2026, 4, 8)) == utc(2026, 4, 5, 7)  # Sunday


def test_next_fire_is_strictly_after() -> None:
    assert next_fire("0 9 * * *", "UTC", utc(2026, 4, 3, 9)) == utc(2026, 4, 4, 9)


def test_a_line_that_never_fires_has_no_fire_time() -> None:
    # Valid crontab (cron accepts it), and no day ever matches.
    assert next_fire("0 9 31 2 *", "UTC", utc(2026, 1, 1)) is None
    assert prev("0 9 31 2 *", "UTC", utc(2026, 1, 1)) is None


# --- Daylight saving. 2026: New York springs forward on 8 March and falls back on 1 November,
# Berlin on 29 March and 25 October.


@pytest.mark.parametrize(
    ("zone", "start", "before", "after"),
    [
        (NY, utc(2026, 3, 7), utc(2026, 3, 7, 14), utc(2026, 3, 8, 13)),  # EST, then EDT
        (NY, utc(2026, 10, 31), utc(2026, 10, 31, 13), utc(2026, 11, 1, 14)),  # EDT, then EST
        (BERLIN, utc(2026, 3, 28), utc(2026, 3, 28, 8), utc(2026, 3, 29, 7)),  # CET, then CEST
        (BERLIN, utc(2026, 10, 24), utc(2026, 10, 24, 7), utc(2026, 10, 25, 8)),  # CEST, CET
    ],
)
def test_nine_oclock_stays_nine_oclock_local_across_dst(
    zone: str, start: datetime, before: datetime, after: datetime
) -> None:
    got = fires("0 9 * * *", zone, start, 2)
    assert got == [before, after]
    assert [f.astimezone(ZoneInfo(zone)).hour for f in got] == [9, 9]
    assert prev("0 9 * * *", zone, after + timedelta(hours=1)) == after
    assert prev("0 9 * * *", zone, after - timedelta(seconds=1)) == before


@pytest.mark.parametrize(
    ("zone", "day", "change"),
    [(NY, 8, utc(2026, 3, 8, 7)), (BERLIN, 29, utc(2026, 3, 29, 1))],
)
def test_a_time_skipped_by_spring_forward_fires_once_at_the_change(
    zone: str, day: int, change: datetime
) -> None:
    # As cron(8): a fixed-time job in the skipped hour runs right after the change, 03:00 local.
    got = fires("30 2 * * *", zone, datetime(2026, 3, day - 1, 12, tzinfo=UTC), 2)
    assert got[0] == change
    assert got[0].astimezone(ZoneInfo(zone)).strftime("%H:%M") == "03:00"
    assert got[1].astimezone(ZoneInfo(zone)).strftime("%d %H:%M") == f"{day + 1:02d} 02:30"
    assert prev("30 2 * * *", zone, change + timedelta(hours=2)) == change
    # Two skipped times fire once, not twice.
    got = fires("0,30 2 * * *", zone, datetime(2026, 3, day - 1, 12, tzinfo=UTC), 2)
    assert got[0] == change
    assert got[1] - got[0] > timedelta(hours=12)


def test_a_time_repeated_by_fall_back_fires_once_on_the_first_pass() -> None:
    # New York, 1 November: 01:00-01:59 happens twice, EDT (UTC-4) then EST (UTC-5).
    got = fires("30 1 * * *", NY, utc(2026, 10, 31, 12), 2)
    assert got == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    assert prev("30 1 * * *", NY, utc(2026, 11, 1, 6, 45)) == utc(2026, 11, 1, 5, 30)
    # Berlin, 25 October: 02:00-02:59 twice, CEST then CET.
    got = fires("30 2 * * *", BERLIN, utc(2026, 10, 24, 12), 2)
    assert got == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_a_line_with_a_star_in_its_hour_follows_the_new_wall_clock() -> None:
    # cron(8): wildcard jobs run by the new time: skipped times are skipped, repeated ones repeat.
    spring = fires("30 * * * *", NY, utc(2026, 3, 8, 5, 45), 3)
    local = [f.astimezone(ZoneInfo(NY)).strftime("%H:%M %Z") for f in spring]
    assert local == ["01:30 EST", "03:30 EDT", "04:30 EDT"]
    fall = fires("30 * * * *", NY, utc(2026, 11, 1, 4), 4)
    local = [f.astimezone(ZoneInfo(NY)).strftime("%H:%M %Z") for f in fall]
    assert local == ["00:30 EDT", "01:30 EDT", "01:30 EST", "02:30 EST"]


def _cron_oracle(cron: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """Every fire in (start, end], found minute by minute with cron(8)'s DST rules."""
    minute, hour, dom, _, dow = cron.split()
    fixed = not (minute.startswith("*") or hour.startswith("*"))
    day_or = not (dom.startswith("*") or dow.startswith("*"))
    tz = ZoneInfo(zone)
    out = []
    t = start
    wall = t.astimezone(tz).replace(tzinfo=None)
    repeated_until: datetime | None = None  # the wall clock reading before the clocks went back
    while t < end:
        t += timedelta(minutes=1)
        prev_wall, wall = wall, t.astimezone(tz).replace(tzinfo=None)
        if wall < prev_wall:  # clocks went back: a fixed time already run does not run again
            repeated_until = prev_wall
            hit = not fixed and croniter.match(cron, wall, day_or=day_or)
        elif wall - prev_wall > timedelta(minutes=1):  # clocks went forward
            skipped = [prev_wall + timedelta(minutes=i) for i in range(1, 180)]
            missed = fixed and any(
                croniter.match(cron, s, day_or=day_or) for s in skipped if s < wall
            )
            hit = missed or croniter.match(cron, wall, day_or=day_or)
        else:
            repeated = repeated_until is not None and wall <= repeated_until
            hit = croniter.match(cron, wall, day_or=day_or) and not (fixed and repeated)
        if hit:
            out.append(t)
    return out


@pytest.mark.parametrize(
    "cron",
    ["30 2 * * *", "0,30 2 * * *", "30 1 * * *", "59 1 * * *", "0 2-3 * * *", "0 9 * * *",
     "*/20 * * * *", "15 * * * *", "0 */2 * * *", "45 1-3 * * 0"],
)  # fmt: skip
@pytest.mark.parametrize(
    ("zone", "day"),
    [(NY, utc(2026, 3, 8)), (NY, utc(2026, 11, 1)), (BERLIN, utc(2026, 3, 29)),
     (BERLIN, utc(2026, 10, 25))],
)  # fmt: skip
def test_next_and_prev_agree_with_a_minute_by_minute_cron(
    cron: str, zone: str, day: datetime
) -> None:
    start, end = day - timedelta(hours=6), day + timedelta(hours=14)  # the change and a margin
    expected = _cron_oracle(cron, zone, start, end)
    forward = []
    t = start
    while (f := next_fire(cron, zone, t)) is not None and f <= end:
        forward.append(f.astimezone(UTC))
        t = f
    assert forward == expected
    backward = []
    t = end
    while (f := prev(cron, zone, t)) is not None and f > start:
        backward.append(f)
        t = f - timedelta(seconds=1)
    assert backward[::-1] == expected


# --- Config validation: what cron runs is accepted, what cron refuses is one readable line.


@pytest.mark.parametrize(
    "cron",
    [
        "0 9 * * 1",
        "0 9 * * */2",
        "0 9 * * 1-5/2",
        "0 9 * * 7",
        "0 9 * * 0",
        "0 9 * * 0-7",
        "0 9 * * MON-FRI",
        "0 9 * * mon-fri/2",
        "0 9 * * sun",
        "0 9 * * mon,wed,fri",
        "0 9 * * 1,3-5",
        "0 9 13 * 5",
        "0 9 */2 * 1",
        "0 9 1 JAN-MAR,dec *",
        "30 2 * * *",
        "*/15 * * * *",
        "00 09 * * 01",
        "0 9 31 2 *",  # never fires, and cron accepts it
    ],
)
def test_config_accepts_what_cron_runs(cron: str) -> None:
    assert Digest(cron=cron).cron == cron


@pytest.mark.parametrize(
    ("cron", "problem"),
    [
        ("0 9 * * 8", "day of week: 8 is out of range 0-7"),
        ("60 9 * * *", "minute: 60 is out of range 0-59"),
        ("0 24 * * *", "hour: 24 is out of range 0-23"),
        ("0 9 0 * *", "day of month: 0 is out of range 1-31"),
        ("0 9 * 13 *", "month: 13 is out of range 1-12"),
        ("0 9 * * 5-1", "day of week: range 5-1 runs backwards"),
        ("0 9 * * sat-sun", "day of week: range sat-sun runs backwards"),
        ("0 9 * * 1/2", "day of week: '1/2': a step needs `*` or a range before it"),
        ("*/0 9 * * *", "minute: step '0' must be a whole number above 0"),
        ("0 9 * * funday", "day of week: 'funday' is not a number or name"),
        ("0 9 mon * *", "day of month: 'mon' is not a number"),
        ("0 9 L * *", "day of month: 'l' is not a number"),
        ("0 9 * * 1#2", "day of week: '1#2' is not a crontab value, range or step"),
        ("0 9 * * ?", "day of week: '?' is not a crontab value, range or step"),
        ("0 9 * *", "expected 5 crontab fields, got 4"),
        ("0 0 9 * * *", "expected 5 crontab fields, got 6"),
        ("@daily", "expected 5 crontab fields, got 1"),
    ],
)
def test_config_refuses_what_cron_refuses(cron: str, problem: str) -> None:
    with pytest.raises(ValidationError) as err:
        Digest(cron=cron)
    [error] = err.value.errors(include_url=False)
    assert error["msg"] == f"Value error, not a crontab expression: {problem}"


def test_check_config_gives_one_line_for_a_bad_schedule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "crowsnest.toml"
    config.write_text('[digest]\ncron = "0 9 * * 1-8/2"\n')
    assert main(["check-config", "--config", str(config)]) == 2
    assert capsys.readouterr().out.splitlines() == [
        "digest.cron: not a crontab expression: day of week: 8 is out of range 0-7"
    ]
