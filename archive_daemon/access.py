"""Who may read a file, and from when: the public date after the proprietary period."""

from __future__ import annotations

import calendar
import datetime as dt

from .config import AccessConfig
from .obstime import UTC


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day `months` later, clipped to the end of a shorter month."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def public_date(night: dt.date | None, mtime: dt.datetime, rules: AccessConfig) -> dt.datetime:
    """When a file becomes public: its night (else its mtime's date) plus the proprietary period."""
    base = night or mtime.astimezone(UTC).date()
    day = add_months(base, rules.proprietary_months)
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
