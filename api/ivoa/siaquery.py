"""SIAv2 query parameters as one SQL condition on ivoa.obscore.

Each parameter's values are OR-ed, different parameters AND-ed (SIA 2.0 section 2.1); a
value a row does not know (NULL) never satisfies a constraint. Every condition is one an
index can answer where there is an index: positions through the GiST indexes of the
footprint's circle and of the point, times through t_min and t_max.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from archive_daemon.skypos import spoly_literal

from .dalparams import UsageFault, interval, latitude, longitude, numbers, texts

# POS against what a file covers: its footprint where it has one, else its position, so a
# file with a position and no footprint is still found. Two indexed tests, OR-ed (BitmapOr):
# the footprint's circle (archive_circle, which holds it), then the footprint itself.
_COVERS = ("((archive_circle && {shape} AND s_region && {shape}) "
           "OR (s_region IS NULL AND archive_point @ {shape}))")
_COVERS_ARGS = 3  # the shape's arguments, once for each {shape}
_CIRCLE = "scircle(spoint(radians(%s), radians(%s)), radians(%s))"
_BOX = "sbox(spoint(radians(%s), radians(%s)), spoint(radians(%s), radians(%s)))"
_POLYGON = "%s::spoly"

# Parameter: the columns whose range (low, high) must meet the interval asked for.
OVERLAPS = {"BAND": ("em_min", "em_max"), "TIME": ("t_min", "t_max")}
# Parameter: the column the interval asked for must include.
WITHIN = {"FOV": "s_fov", "SPATRES": "s_resolution", "EXPTIME": "t_exptime", "TIMERES": "t_resolution",
          "SPECRP": "em_res_power"}
# Parameter: the column it must equal, exactly (SIA 2.0: text is compared case-sensitively).
EQUALS = {"COLLECTION": "obs_collection", "FACILITY": "facility_name", "INSTRUMENT": "instrument_name",
          "DPTYPE": "dataproduct_type", "TARGET": "target_name", "FORMAT": "access_format"}


@dataclass
class Condition:
    """SQL to AND into a WHERE clause, with its arguments; `polygons` for pgsphere to check first."""

    clauses: list[str] = field(default_factory=list)
    args: list = field(default_factory=list)
    polygons: list[str] = field(default_factory=list)

    def any_of(self, alternatives: list[tuple[str, list]]) -> None:
        if alternatives:
            self.clauses.append("(" + " OR ".join(sql for sql, _ in alternatives) + ")")
            self.args.extend(arg for _, args in alternatives for arg in args)

    @property
    def sql(self) -> str:
        return " AND ".join(self.clauses) or "TRUE"


def condition(params: dict[str, list[str]]) -> Condition:
    """The condition the request's SIA parameters make (UsageFault naming a bad one)."""
    found = Condition()
    shapes = [_shape(text) for text in texts(params, "POS")]
    found.polygons = [args[0] for sql, args in shapes if sql == _POLYGON]
    found.any_of([(_COVERS.format(shape=sql), args * _COVERS_ARGS) for sql, args in shapes])
    for name, (low_column, high_column) in OVERLAPS.items():
        found.any_of([_range_meets(low_column, high_column, interval(name, text)) for text in texts(params, name)])
    for name, column in WITHIN.items():
        found.any_of([_range_meets(column, column, interval(name, text)) for text in texts(params, name)])
    for name, column in EQUALS.items():
        found.any_of([(f"{column} = %s", [text]) for text in texts(params, name)])
    # IVOA identifiers compare case-insensitively (SIA 2.0 erratum, IVOA Identifiers 2.0).
    found.any_of([("lower(obs_publisher_did) = lower(%s)", [text]) for text in texts(params, "ID")])
    found.any_of([("strpos(pol_states, %s) > 0", [f"/{text}/"]) for text in texts(params, "POL")])
    found.any_of([("calib_level = %s", [_calib(text)]) for text in texts(params, "CALIB")])
    return found


def _range_meets(low_column: str, high_column: str, asked: tuple[float, float]) -> tuple[str, list]:
    """[low_column, high_column] meets [lo, hi] (an open end is an infinite float: any known value meets it)."""
    low, high = asked
    return f"({low_column} <= %s AND {high_column} >= %s)", [high, low]


def _calib(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 2:
        raise UsageFault("CALIB", f"{text[:40]!r} is not a calibration level (0 to 4)")
    return int(text)


def _shape(text: str) -> tuple[str, list]:
    """A POS value as pgsphere SQL and its arguments (degrees)."""
    keyword, rest = (text.split(None, 1) + [""])[:2]
    keyword = keyword.upper()
    if keyword == "CIRCLE":
        values = numbers("POS", rest)
        if len(values) != 3:
            raise UsageFault("POS", f"CIRCLE takes 3 numbers (ra dec radius), not {len(values)}")
        ra, dec, radius = longitude("POS", values[0]), latitude("POS", values[1]), values[2]
        if not 0 <= radius <= 90:
            raise UsageFault("POS", f"CIRCLE radius {radius:g} is outside 0 to 90 degrees")
        return _CIRCLE, [ra, dec, radius]
    if keyword == "RANGE":
        return _BOX, _range(rest)
    if keyword == "POLYGON":
        return _POLYGON, [_polygon(rest)]
    raise UsageFault("POS", f"{text[:40]!r}: expected CIRCLE, RANGE or POLYGON followed by numbers")


def _range(text: str) -> list[float]:
    values = numbers("POS", text, infinite=True)
    if len(values) != 4:
        raise UsageFault("POS", f"RANGE takes 4 numbers (ra1 ra2 dec1 dec2), not {len(values)}")
    ra1, ra2 = (_bounded(v, 0, 360) for v in values[:2])
    dec1, dec2 = (_bounded(v, -90, 90) for v in values[2:])
    for low, high, what, (edge_low, edge_high) in ((ra1, ra2, "right ascension", (0, 360)),
                                                   (dec1, dec2, "declination", (-90, 90))):
        if not (edge_low <= low <= edge_high and edge_low <= high <= edge_high):
            raise UsageFault("POS", f"RANGE: {what} outside {edge_low} to {edge_high} degrees")
        if low > high:
            raise UsageFault("POS", f"RANGE: the {what} range ends below where it starts")
    # pgsphere reads a box whose corners share a right ascension as going all the way
    # round; a range of one right ascension is searched as a sliver instead.
    if ra1 == ra2:
        ra2 = ra1 + 1e-9
    return [ra1, dec1, ra2, dec2]


def _bounded(value: float, low: float, high: float) -> float:
    """An open end (-Inf, +Inf) of a RANGE as the sky's edge; a finite value as given."""
    return low if value == -math.inf else high if value == math.inf else value


def _polygon(text: str) -> str:
    values = numbers("POS", text)
    if len(values) % 2 or len(values) < 6:
        raise UsageFault("POS", f"POLYGON takes 3 or more ra dec pairs, not {len(values)} numbers")
    return spoly_literal([(longitude("POS", ra), latitude("POS", dec)) for ra, dec in zip(values[::2], values[1::2])])
