"""Budget periods in the operator's time zone (``BUDGET_TIMEZONE``, Korea by default).

A day budget rolls over at local midnight (00:00 KST is 15:00 UTC the day before), a month
budget on the local first of the month; "today" in the console and the admin API is the same
local day. Counter keys name the local period: ``d:YYYY-MM-DD`` and ``m:YYYY-MM``.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

DEFAULT_BUDGET_TIMEZONE = "Asia/Seoul"
KST = ZoneInfo(DEFAULT_BUDGET_TIMEZONE)
DAY_PREFIX = "d:"  # a day's counter key: d:YYYY-MM-DD
MONTH_PREFIX = "m:"  # a month's counter key: m:YYYY-MM


def budget_timezone(name: str | None) -> ZoneInfo:
    """The zone named by the setting; an unknown name is a configuration error, raised."""
    return ZoneInfo((name or DEFAULT_BUDGET_TIMEZONE).strip())


def _local(at: datetime, tz: tzinfo) -> datetime:
    # Naive datetimes are UTC, like everything the server stores.
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(tz)


def day_key(at: datetime, tz: tzinfo = KST) -> str:
    """The budget counter period of ``at``'s calendar day in ``tz`` (``d:YYYY-MM-DD``)."""
    return f"{DAY_PREFIX}{_local(at, tz):%Y-%m-%d}"


def month_key(at: datetime, tz: tzinfo = KST) -> str:
    """The budget counter period of ``at``'s calendar month in ``tz`` (``m:YYYY-MM``)."""
    return f"{MONTH_PREFIX}{_local(at, tz):%Y-%m}"


def is_day_key(period: str) -> bool:
    """Whether a counter period is a day (else it is a month)."""
    return period.startswith(DAY_PREFIX)


def day_start(at: datetime, tz: tzinfo = KST) -> datetime:
    """The UTC instant the local day containing ``at`` began."""
    local = _local(at, tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def next_day_start(at: datetime, tz: tzinfo = KST) -> datetime:
    local = _local(at, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    # add a calendar day in local time (23 or 25 hours across a DST change)
    nxt = (local.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=tz)
    return nxt.astimezone(UTC)


def month_start(at: datetime, tz: tzinfo = KST) -> datetime:
    local = _local(at, tz)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def local_date(at: datetime, tz: tzinfo = KST) -> str:
    return f"{_local(at, tz):%Y-%m-%d}"
