"""Query parameters, parsed once at the edge: angles, radii, times; unknown names refused.

Every mistake is a 400 whose description names the parameter and what was wrong with it.
"""

from __future__ import annotations

import datetime as dt
import math
import re

import falcon

_SEXAGESIMAL = re.compile(r"^([+-]?)(\d+(?:\.\d*)?)[h:d ]\s*(\d+(?:\.\d*)?)[m: ]\s*(\d+(?:\.\d*)?)s?$")
_RADIUS = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*([sdm\"']|arcsec|arcmin|deg)?$")
_RADIUS_UNITS = {None: 1.0, "d": 1.0, "deg": 1.0, "m": 1 / 60, "'": 1 / 60, "arcmin": 1 / 60,
                 "s": 1 / 3600, '"': 1 / 3600, "arcsec": 1 / 3600}
# PostgreSQL refuses NUL in text, XML and HTTP headers refuse the other control characters,
# and UTF-8 cannot carry an unpaired surrogate (JSON can: "\ud800"). None has a meaning in
# a parameter, so none gets past the edge.
UNFIT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
# ASCII digits only (str.isdigit() and int() take '²' and '٣'), and no more than a bigint holds.
_WHOLE = re.compile(r"[0-9]{1,18}")
ID_MAX = 2**63 - 1


def whole(text: str) -> int | None:
    """A whole number written in ASCII digits that fits PostgreSQL's bigint; else None."""
    return int(text) if _WHOLE.fullmatch(text) else None


def unfit_character(text: str) -> bool:
    """Whether `text` holds a control character or an unpaired surrogate."""
    return UNFIT.search(text) is not None


def bad(name: str, message: str) -> falcon.HTTPBadRequest:
    return falcon.HTTPBadRequest(title=f"Invalid parameter '{name}'", description=f"{name}: {message}")


class Params:
    """A request's parameters; `done()` refuses those no one asked for."""

    def __init__(self, req: falcon.Request, allowed_extra: tuple[str, ...] = ()):
        self.values: dict[str, str] = {}
        for name in req.params:
            value = req.params[name]
            if isinstance(value, list):
                raise bad(name, "given more than once")
            self.values[name] = value
        self.used: set[str] = set(allowed_extra)

    def text(self, name: str, default: str | None = None) -> str | None:
        self.used.add(name)
        value = self.values.get(name)
        if value is None:
            return default
        if not value.strip():
            raise bad(name, "is empty")
        if unfit_character(value):
            raise bad(name, "contains a control character (or an unpaired surrogate)")
        return value.strip()

    def integer(self, name: str, default: int | None, low: int, high: int) -> int | None:
        value = self.text(name)
        if value is None:
            return default
        number = whole(value)
        if number is None:
            raise bad(name, f"{value[:40]!r} is not a whole number from {low} to {high}")
        if not low <= number <= high:
            raise bad(name, f"must be between {low} and {high} (got {number})")
        return number

    def number(self, name: str) -> float | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            raise bad(name, f"{value!r} is not a number") from None
        if not math.isfinite(number):
            raise bad(name, f"{value!r} is not a finite number")
        return number

    def boolean(self, name: str) -> bool:
        value = self.text(name, "false").lower()
        if value not in ("true", "false", "1", "0", "yes", "no"):
            raise bad(name, f"{value!r} is not true or false")
        return value in ("true", "1", "yes")

    def choice(self, name: str, default: str | None, choices: tuple[str, ...]) -> str | None:
        value = self.text(name, default)
        if value is not None and value not in choices:
            raise bad(name, f"must be one of {', '.join(choices)} (got {value!r})")
        return value

    def angle(self, name: str, hours: bool) -> float | None:
        """Degrees from degrees, or sexagesimal (hours for RA: 23h19m58.4s, 23:19:58.4, 23 19 58.4)."""
        value = self.text(name)
        if value is None:
            return None
        match = _SEXAGESIMAL.match(value)
        if match:
            sign, whole, minutes, seconds = match.groups()
            if float(minutes) >= 60 or float(seconds) >= 60:
                raise bad(name, f"{value!r}: minutes and seconds must be below 60")
            degrees = (float(whole) + float(minutes) / 60 + float(seconds) / 3600) * (15 if hours else 1)
            degrees = -degrees if sign == "-" else degrees
        else:
            try:
                degrees = float(value.rstrip("d"))
            except ValueError:
                raise bad(name, f"{value!r} is not an angle (degrees, or sexagesimal like "
                                f"{'23h19m58.4s' if hours else '-05d09m56s'})") from None
        if hours and not 0 <= degrees < 360 or not hours and not -90 <= degrees <= 90:
            raise bad(name, f"{value!r} is out of range")
        return degrees

    def radius(self, name: str, maximum: float) -> float | None:
        value = self.text(name)
        if value is None:
            return None
        match = _RADIUS.match(value)
        if not match:
            raise bad(name, f"{value!r} is not a radius (30s, 2m, 0.5d or degrees)")
        degrees = float(match.group(1)) * _RADIUS_UNITS[match.group(2)]
        if not 0 < degrees <= maximum:
            raise bad(name, f"must be above 0 and at most {maximum:g} degrees (got {value!r})")
        return degrees

    def time(self, name: str) -> dt.datetime | None:
        """ISO 8601; without a time zone, UTC."""
        value = self.text(name)
        if value is None:
            return None
        # A '+' left unencoded in a query string arrives as a space.
        text = value.replace("Z", "+00:00").replace(" ", "+")
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            raise bad(name, f"{value!r} is not an ISO 8601 time (2024-03-05T06:07:08+00:00)") from None
        if when.tzinfo is None:
            return when.replace(tzinfo=dt.timezone.utc)
        # Python takes offsets up to ±23:59, PostgreSQL only to ±15:59: hand it UTC.
        try:
            return when.astimezone(dt.timezone.utc)
        except OverflowError:
            raise bad(name, f"{value!r} is out of range once in UTC") from None

    def date(self, name: str) -> dt.date | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise bad(name, f"{value!r} is not a date (YYYY-MM-DD)") from None

    def done(self) -> None:
        unknown = sorted(set(self.values) - self.used)
        if unknown:
            raise bad(unknown[0], "unknown parameter")
