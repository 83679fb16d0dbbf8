"""The on-disk layout convention: `YYYY-MM/DD/<instrument>/<file>`, one directory per night."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from .obstime import accepted

# ASCII digits only: int() reads `２０１９` as 2019, and a directory name must not date a file.
_NIGHT = re.compile(r"(?:^|/)([0-9]{4})-([0-9]{2})/([0-9]{2})/([^/]+)/")


@dataclass(frozen=True)
class Placement:
    night: dt.date | None
    instrument_dir: str | None


def placement(relpath: str) -> Placement:
    """Night and instrument directory of a file from its path; (None, None) off-layout."""
    match = _NIGHT.search(relpath)
    if not match:
        return Placement(None, None)
    year, month, day, instrument = match.groups()
    try:
        night = dt.date(int(year), int(month), int(day))
    except ValueError:
        return Placement(None, instrument)
    # A directory named for year 1 or 9999 is no night: dates derived from it would overflow.
    return Placement(night if accepted(night) else None, instrument)
