"""`crowsnest …` with some scheduled jobs run every $CROWSNEST_TEST_JOB_SECONDS seconds.

`bot.app` schedules `expire-ignores` every 30 s (not configurable), which is too slow for a
test that checks that two replicas act on an expired ignore once. $CROWSNEST_TEST_FAST_JOBS names
the jobs to speed up (comma-separated; default `expire-ignores`, `*` for all). Everything else is
the real command: `python -m tests.support.fast_jobs serve --config PATH`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import bot.app
from handlers.cli import main

_real_scheduler = getattr(bot.app, "scheduler")  # noqa: B009 (not re-exported)


def _fast_scheduler(jobs: dict[str, tuple[Any, float]]) -> Any:
    seconds = float(os.environ.get("CROWSNEST_TEST_JOB_SECONDS", "0.5"))
    names = os.environ.get("CROWSNEST_TEST_FAST_JOBS", "expire-ignores").split(",")
    return _real_scheduler(
        {
            name: (job, seconds if name in names or "*" in names else every)
            for name, (job, every) in jobs.items()
        }
    )


setattr(bot.app, "scheduler", _fast_scheduler)  # noqa: B010

if __name__ == "__main__":
    sys.exit(main())
