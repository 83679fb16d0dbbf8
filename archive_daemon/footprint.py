"""An image's footprint on the sky from its WCS: where its corners and centre fall.

The usual WCS of optical imagers, the gnomonic (TAN) projection with CRVAL, CRPIX and a CD
matrix or CDELT and PC, in degrees, is computed here with the projection's own formula
(Calabretta & Greisen 2002, section 5.1.3): wcslib would spend six times as long reading the
cards, and astropy a third of a second being imported by each header reader. Every other WCS
(other projections, PV terms, CROTA, LONPOLE, other units) is read from its cards by wcslib.
tests/test_wcs.py holds both ways to what astropy.wcs.WCS gives.
"""

from __future__ import annotations

import math
import re

from .skypos import PositionError, separation

# A footprint larger than this across is a broken WCS, not a real field of view.
MAX_FOOTPRINT_DEG = 20.0
# The celestial WCS keywords among a header's, one per line: found in one pass.
_WCS_KEYS = re.compile(r"^(?:(?:CTYPE|CRVAL|CRPIX|CDELT|CUNIT|CROTA)[12]|(?:CD|PC)[12]_[12]|PV[12]_\d+"
                       r"|LONPOLE|LATPOLE)$", re.MULTILINE)
# The keywords of the usual gnomonic WCS, which _gnomonic computes.
_GNOMONIC_KEYS = {f"{key}{axis}" for key in ("CTYPE", "CRVAL", "CRPIX", "CDELT", "CUNIT") for axis in (1, 2)} | \
    {f"{matrix}{i}_{j}" for matrix in ("CD", "PC") for i in (1, 2) for j in (1, 2)}


def wcs_footprint(header) -> tuple[tuple[float, float], list[tuple[float, float]]] | None:
    """Centre and corners (degrees, in the WCS's own frame) of a celestial image WCS, or None.

    `header` is a fitsfile.Cards. Raises PositionError when the header claims a celestial
    WCS that does not work.
    """
    ctype1 = str(header.get("CTYPE1", "")).upper()
    ctype2 = str(header.get("CTYPE2", "")).upper()
    if not (ctype1.startswith("RA--") and ctype2.startswith("DEC-")):
        return None
    try:
        n1, n2 = int(header.get("NAXIS1", 0)), int(header.get("NAXIS2", 0))
    except (TypeError, ValueError):
        return None
    if n1 <= 0 or n2 <= 0:
        return None
    for key, limit in (("CRVAL1", 360.0), ("CRVAL2", 90.0)):
        value = header.get(key, 0.0)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not abs(value) <= limit:
            raise PositionError(f"WCS unusable: {key} {value!r} is not a sky position")
    keys = _WCS_KEYS.findall("\n".join(header.keys()))
    pixels = [(0.5, 0.5), (n1 + 0.5, 0.5), (n1 + 0.5, n2 + 0.5), (0.5, n2 + 0.5), ((n1 + 1) / 2, (n2 + 1) / 2)]
    world = _gnomonic(header, keys, pixels) or _wcslib(header, keys, pixels)
    if not all(math.isfinite(c) for point in world for c in point):
        raise PositionError("WCS gives no finite sky position for the image corners")
    points = [(ra % 360.0, dec) for ra, dec in world[:4]]
    centre = (world[4][0] % 360.0, world[4][1])
    if max(separation(centre, p) for p in points) > MAX_FOOTPRINT_DEG / 2:
        raise PositionError("WCS footprint is implausibly large: ignored")
    return centre, points


def _gnomonic(header, keys: list[str], pixels) -> list[tuple[float, float]] | None:
    """RA and DEC (degrees) of each pixel for the usual TAN WCS; None for any other WCS."""
    if not _GNOMONIC_KEYS.issuperset(keys):
        return None
    values = {key: header.get(key) for key in keys}
    ctypes = [values.pop("CTYPE1"), values.pop("CTYPE2")]
    units = [values.pop(key, "deg") for key in ("CUNIT1", "CUNIT2")]
    if ctypes != ["RA---TAN", "DEC--TAN"] or \
            not all(isinstance(unit, str) and unit.strip().lower() == "deg" for unit in units) or \
            not all(type(v) in (int, float) and math.isfinite(v) for v in values.values()):
        return None
    cd = any(key[:2] == "CD" and key[2] != "E" for key in values)
    if cd and any(key[:2] == "PC" or key[:5] == "CDELT" for key in values):
        return None  # wcslib's precedence between the two matrices decides
    if cd:
        matrix = [[values.get(f"CD{i}_{j}", 0.0) for j in (1, 2)] for i in (1, 2)]
    else:
        scale = (values.get("CDELT1", 1.0), values.get("CDELT2", 1.0))
        matrix = [[scale[i - 1] * values.get(f"PC{i}_{j}", float(i == j)) for j in (1, 2)] for i in (1, 2)]
    ra0, dec0 = math.radians(values.get("CRVAL1", 0.0)), math.radians(values.get("CRVAL2", 0.0))
    if not abs(dec0) < math.pi / 2 or matrix[0][0] * matrix[1][1] == matrix[0][1] * matrix[1][0]:
        return None  # at the pole, or with a singular matrix: wcslib's cases, and its words
    crpix1, crpix2 = values.get("CRPIX1", 0.0), values.get("CRPIX2", 0.0)
    sin0, cos0 = math.sin(dec0), math.cos(dec0)
    world = []
    for p1, p2 in pixels:
        du, dv = p1 - crpix1, p2 - crpix2
        # Intermediate world coordinates: the point (1, x, y) on the plane tangent at CRVAL.
        x = math.radians(matrix[0][0] * du + matrix[0][1] * dv)
        y = math.radians(matrix[1][0] * du + matrix[1][1] * dv)
        along = cos0 - y * sin0  # rotated to the equator's frame: toward RA0 on the equator
        world.append((math.degrees(ra0 + math.atan2(x, along)),
                      math.degrees(math.atan2(sin0 + y * cos0, math.hypot(x, along)))))
    return world


def _wcslib(header, keys: list[str], pixels) -> list[tuple[float, float]]:
    """RA and DEC (degrees) of each pixel, wcslib reading the WCS cards (the WCS ones only)."""
    import numpy as np
    from astropy.wcs import Wcsprm  # slow to import; only WCS forms other than the usual need it
    try:
        wcs = Wcsprm(header="".join(_wcslib_card(header, key) for key in keys).encode("ascii"), warnings=False)
        wcs.unitfix()  # units and projections headers often give against the standard ('DEG',
        wcs.celfix()   # NCP, GLS), mended as astropy's WCS mends them
        wcs.set()
        return [(float(ra), float(dec)) for ra, dec in wcs.p2s(np.array(pixels), 1)["world"]]
    except Exception as exc:
        raise PositionError(f"WCS unusable: {' '.join(str(exc).split())[:120]}") from None


def _wcslib_card(header, key: str) -> str:
    """The card as wcslib should read it: a real's D exponent (1.5D2, which the standard
    allows) written as E, which wcslib reads (it takes 1.5D2 for 1.5)."""
    image = header.image(key)
    if isinstance(header.get(key), float):
        value, slash, comment = image[10:].partition("/")
        image = image[:10] + value.replace("D", "E").replace("d", "e") + slash + comment
    return image
