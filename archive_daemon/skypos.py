"""Sky positions from headers (RA/DEC keywords in any usual form), and how pgsphere takes them.

Everything leaves this module as ICRS degrees. A value that cannot be a position raises
PositionError: the archive stores no position rather than a wrong one.
"""

from __future__ import annotations

import math
import re
import warnings

# How much larger than its farthest vertex a footprint's bounding circle is: far more than the
# rounding of degrees to radians and back, far less than anything a search could notice.
CIRCLE_MARGIN_DEG = 1e-6
# Equinoxes that reference frames are given in; anything else is a broken value.
FIRST_EQUINOX, LAST_EQUINOX = 1800.0, 2200.0
_SEXAGESIMAL = re.compile(r"[:hdms\s]")
# "12:34:56.7", "-05 09 56": the forms headers nearly always use, read without astropy's
# general angle grammar (~50 us a value); anything else (12h34m, radians...) goes to it.
_PLAIN_DMS = re.compile(r"([+-]?)(\d{1,3})(?::|\s+)(\d{1,2})(?::|\s+)(\d{1,2}(?:\.\d*)?)")
# The units a header's RA or DEC may be given in (keywords.ra_unit...): degrees in one, and
# the unit's name for astropy.
_UNITS = {"hours": (15.0, "hourangle"), "degrees": (1.0, "deg"), "radians": (math.degrees(1.0), "rad")}


class PositionError(ValueError):
    """A position value that is present but unusable; the message says which and why."""


def _sexagesimal(text: str, unit: str) -> float:
    plain = _PLAIN_DMS.fullmatch(text)
    if plain and unit != "radians" and int(plain[3]) < 60 and float(plain[4]) < 60:
        sign, whole, minutes, seconds = plain.groups()
        value = int(whole) + int(minutes) / 60 + float(seconds) / 3600
        return (-value if sign == "-" else value) * (15.0 if unit == "hours" else 1.0)
    from astropy.coordinates import Angle  # slow to import, and most headers never need it
    from astropy.units import UnitsError
    try:
        return Angle(text, unit=_UNITS[unit][1]).degree
    except UnitsError as exc:
        raise ValueError(str(exc)) from None


def _angle(value, unit: str, what: str, is_ra: bool) -> float:
    if isinstance(value, bool):
        raise PositionError(f"{what} {value!r} is not an angle")
    if isinstance(value, str):
        text = value.strip()
        sexagesimal = bool(_SEXAGESIMAL.search(text.lstrip("+-")))
        if unit == "auto":
            unit = "hours" if (sexagesimal and is_ra) else "degrees"
        try:
            degrees = _sexagesimal(text, unit) if sexagesimal else float(text) * _UNITS[unit][0]
        except ValueError:
            raise PositionError(f"{what} {text!r} is not an angle") from None
    elif isinstance(value, (int, float)):
        degrees = float(value) * _UNITS["degrees" if unit == "auto" else unit][0]
    else:
        raise PositionError(f"{what} {value!r} is not an angle")
    if not math.isfinite(degrees):
        raise PositionError(f"{what} {value!r} is not a finite angle")
    return degrees


def parse_radec(ra_value, dec_value, ra_unit: str = "auto", dec_unit: str = "auto") -> tuple[float, float]:
    """RA and DEC header values as degrees, range-checked."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy warns about 60-second fields; the value is still right
        ra = _angle(ra_value, ra_unit, "RA", True)
        dec = _angle(dec_value, dec_unit, "DEC", False)
    if not 0.0 <= ra <= 360.0:
        raise PositionError(f"RA {str(ra_value).strip()!r} is out of range")
    if not -90.0 <= dec <= 90.0:
        raise PositionError(f"DEC {str(dec_value).strip()!r} is out of range")
    return ra % 360.0, dec


def _equinox(value) -> float | None:
    """The equinox as a year; None when absent or not a number, PositionError when absurd."""
    if value is None or isinstance(value, bool):
        return None
    text = value.strip().upper().lstrip("JB") if isinstance(value, str) else value
    try:
        year = float(text)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(year) and FIRST_EQUINOX <= year <= LAST_EQUINOX):
        raise PositionError(f"EQUINOX {value!r} is not a usable equinox")
    return year


def to_icrs(points: list[tuple[float, float]], radesys: str | None, equinox_value) -> tuple[list[tuple[float, float]], str | None]:
    """Convert positions in the header's reference frame to ICRS; also returns a note or None.

    Raises PositionError when the frame needs an equinox the header gives as an absurd value,
    or when the conversion gives no finite position.
    """
    frame = (radesys or "").strip().upper() or None
    if frame == "ICRS":
        return points, None
    equinox = _equinox(equinox_value)
    if frame is None:
        if equinox is None:
            return points, None
        frame = "FK4" if equinox < 1984.0 else "FK5"
    if frame == "FK5" and (equinox is None or abs(equinox - 2000.0) < 1e-3):
        return points, None
    if frame not in ("FK4", "FK4-NO-E", "FK5"):
        return points, f"reference system {frame!r} not understood: position assumed ICRS"
    import astropy.units as u
    import numpy as np
    from astropy.coordinates import FK4, FK5, ICRS, SkyCoord  # slow to import; rarely needed
    from astropy.time import Time
    if frame == "FK5":
        source = FK5(equinox=Time(equinox, format="jyear"))
    else:
        source = FK4(equinox=Time(equinox or 1950.0, format="byear"))
    ras, decs = zip(*points)
    coords = SkyCoord(list(ras) * u.deg, list(decs) * u.deg, frame=source).transform_to(ICRS())
    if not (np.all(np.isfinite(coords.ra.deg)) and np.all(np.isfinite(coords.dec.deg))):
        raise PositionError(f"{frame} equinox {equinox or 1950.0:g} gives no finite ICRS position")
    converted = [(float(r), float(d)) for r, d in zip(coords.ra.deg, coords.dec.deg)]
    return converted, f"position converted from {frame} equinox {equinox or 1950.0:g} to ICRS"


def spoint_literal(ra: float, dec: float) -> str:
    """pgsphere point input, in degrees (the server converts exactly as radians() would)."""
    return f"({float(ra)!r}d,{float(dec)!r}d)"


def spoly_literal(points: list[tuple[float, float]]) -> str:
    """pgsphere polygon input, in degrees."""
    return "{" + ",".join(spoint_literal(ra, dec) for ra, dec in points) + "}"


def bounding_circle(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Centre (degrees) and radius (degrees) of a circle holding every point, a hair larger.

    The centre is the direction of the points' mean; the radius reaches the farthest point
    plus CIRCLE_MARGIN_DEG. The circle is convex on the sphere, so it holds the polygon of
    those points too. Raises ValueError for points no circle of 90 degrees or less holds.
    """
    vectors = [_unit(ra, dec) for ra, dec in points]
    x, y, z = (sum(v[i] for v in vectors) for i in range(3))
    norm = math.sqrt(x * x + y * y + z * z)
    if not norm:
        raise ValueError("points around the whole sky have no bounding circle")
    centre = (x / norm, y / norm, z / norm)
    radius = max(_between(centre, v) for v in vectors) + CIRCLE_MARGIN_DEG
    if radius > 90.0:
        raise ValueError(f"points {radius:.1f} degrees from their centre have no bounding circle")
    ra = math.degrees(math.atan2(centre[1], centre[0])) % 360.0
    return (0.0 if ra == 360.0 else ra), math.degrees(math.atan2(centre[2], math.hypot(centre[0], centre[1]))), radius


def separation(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Degrees between two (RA, DEC) positions given in degrees."""
    return _between(_unit(*a), _unit(*b))


def _unit(ra: float, dec: float) -> tuple[float, float, float]:
    ra, dec = math.radians(ra), math.radians(dec)
    return math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec)


def _between(a, b) -> float:
    """Degrees between two unit vectors, exact for small angles too (acos is not)."""
    cross = (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])
    return math.degrees(math.atan2(math.sqrt(sum(c * c for c in cross)), sum(p * q for p, q in zip(a, b))))


def scircle_literal(points: list[tuple[float, float]]) -> str:
    """pgsphere circle input, in degrees: the bounding circle of a footprint's corners."""
    ra, dec, radius = bounding_circle(points)
    return f"<{spoint_literal(ra, dec)},{radius!r}d>"
