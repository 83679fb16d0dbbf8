"""The observing night, defined once: the local date on which the night began.

A night runs from noon to noon in the site's time zone, so a frame taken at 02:00 or at
dawn belongs to the previous evening's date. The `night` column (and so the API's night
search) and the access rules (schedule look-ups, public dates) all take it from here.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from .config import AccessConfig
from .layout import placement

HALF_DAY = dt.timedelta(hours=12)
MTIME_NOTE = "no observation date: the night is taken from the file's modification time"


def site_zone(access: AccessConfig, root_zone: str | None, telescope: str | None) -> zoneinfo.ZoneInfo:
    """The telescope's time zone, else its root's, else the configured default."""
    return zoneinfo.ZoneInfo(access.setting("telescopes", telescope).timezone or root_zone or access.timezone)


def observing_night(relpath: str, obs_start: dt.datetime | None, mtime: dt.datetime,
                    zone: zoneinfo.ZoneInfo) -> tuple[dt.date, str | None]:
    """The night of a file, and a note when it is only the modification time's guess.

    The night directory of the layout wins; else the observation start, local time minus
    twelve hours; else the file's modification time likewise.
    """
    night = placement(relpath).night
    if night is not None:
        return night, None
    if obs_start is not None:
        return (obs_start.astimezone(zone) - HALF_DAY).date(), None
    return (mtime.astimezone(zone) - HALF_DAY).date(), MTIME_NOTE
