"""Observation times from header values: ISO 8601, date + time-of-day, old DD/MM/YY, MJD.

All results are timezone-aware UTC datetimes. Parsing is strict: a value that is not a
real date gives None, so the caller can try the next keyword and note why. Dates outside
FIRST_YEAR..LAST_YEAR are no observation's (and would overflow the dates derived from
them, such as the end of a proprietary period): `accepted` says so.
"""

from __future__ import annotations

import datetime as dt
import re

UTC = dt.timezone.utc
MJD_EPOCH = dt.datetime(1858, 11, 17, tzinfo=UTC)
FIRST_YEAR, LAST_YEAR = 1800, 2200  # the oldest plates archives digitise; far enough ahead

_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?Z?$")
_OLD = re.compile(r"(\d{2})/(\d{2})/(\d{2})$")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?$")


def _fraction(digits: str | None) -> int:
    """Microseconds from the digits after a decimal point."""
    return int((digits or "0")[:6].ljust(6, "0"))


def parse_date(value) -> tuple[dt.datetime, bool] | None:
    """A date or date-time string as (UTC datetime, whether it carried a time of day)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    match = _ISO.match(text)
    try:
        if match:
            year, month, day, hour, minute, second, frac = match.groups()
            when = dt.datetime(int(year), int(month), int(day), tzinfo=UTC)
            if hour is None:
                return when, False
            offset = dt.timedelta(hours=int(hour), minutes=int(minute), seconds=int(second or 0),
                                  microseconds=_fraction(frac))
            if offset >= dt.timedelta(hours=24, seconds=1):
                return None
            return when + offset, True
        match = _OLD.match(text)
        if match:  # the pre-2000 FITS form DD/MM/YY always means 19YY
            day, month, year = (int(g) for g in match.groups())
            return dt.datetime(1900 + year, month, day, tzinfo=UTC), False
    except (ValueError, OverflowError):  # no such day; a day after 9999-12-31
        return None
    return None


def parse_time_of_day(value) -> dt.timedelta | None:
    """'hh:mm:ss.sss' (or a number of hours) as an offset from midnight."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.timedelta(hours=float(value)) if 0 <= value < 24 else None
    if not isinstance(value, str):
        return None
    match = _TIME.match(value.strip())
    if not match:
        return None
    hour, minute, second, frac = match.groups()
    hour, minute, second = int(hour), int(minute), int(second or 0)
    if hour > 23 or minute > 59 or second > 60:
        return None
    return dt.timedelta(hours=hour, minutes=minute, seconds=second, microseconds=_fraction(frac))


def from_mjd(value) -> dt.datetime | None:
    try:
        mjd = float(value)
    except (TypeError, ValueError):
        return None
    if not 0 < mjd < 100000:
        return None
    return MJD_EPOCH + dt.timedelta(days=mjd)


def accepted(day: dt.date) -> bool:
    """Whether a date (or datetime) lies in the years the archive accepts."""
    return FIRST_YEAR <= day.year <= LAST_YEAR


def plausible_for_night(when: dt.datetime, night: dt.date) -> bool:
    """Whether a UTC time can belong to the observing night named by a directory."""
    start = dt.datetime(night.year, night.month, night.day, tzinfo=UTC) - dt.timedelta(days=1)
    return start <= when <= start + dt.timedelta(days=3)
