"""Crontab lines for APScheduler, with cron's own day-of-week numbering."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def trigger_for(cron: str, timezone: str) -> CronTrigger:
    """A crontab line as cron means it: APScheduler 3 reads a numeric day of week with
    0 = Monday, crontab with 0 = Sunday, so numbers are turned into day names first."""
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 crontab fields, got {len(fields)}")
    minute, hour, day, month, dow = fields
    dow = re.sub(r"\d+", lambda m: _DAYS[int(m.group())] if int(m.group()) < 8 else m.group(), dow)
    return CronTrigger(
        minute=minute, hour=hour, day=day, month=month, day_of_week=dow, timezone=ZoneInfo(timezone)
    )
