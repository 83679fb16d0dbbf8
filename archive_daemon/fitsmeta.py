"""Turn a file's headers into the archive's normalised metadata, noting every doubtful value.

Values that cannot be read are left empty and noted; they never make the file fail. The
file's place in the night layout supplies the instrument directory, which chooses the
keyword map, and the night directory's date, against which header dates are checked.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from dataclasses import dataclass, field

from . import obstime, skypos
from .fitsfile import HeaderSet
from .footprint import wcs_footprint
from .keywords import InstrumentProfile, KeywordMap, choose_profile
from .layout import placement


@dataclass
class Metadata:
    """What the header says; the night is not here but in night.py, which needs the site."""

    instrument: str | None = None
    telescope: str | None = None
    object: str | None = None
    obs_start: dt.datetime | None = None
    obs_end: dt.datetime | None = None
    date_source: str | None = None
    exptime: float | None = None
    frame_type: str | None = None
    filter: str | None = None
    program: str | None = None
    ra: float | None = None
    dec: float | None = None
    footprint: list[tuple[float, float]] | None = None
    naxis: list[int | None] | None = None  # NAXIS1, NAXIS2 of the data
    notes: list[str] = field(default_factory=list)


class _Reader:
    """Keyword look-ups through one keyword map, cleaning placeholders on the way."""

    def __init__(self, headers: HeaderSet, keywords: KeywordMap, notes: list[str]):
        self.headers = headers
        self.keywords = keywords
        self.notes = notes

    def value(self, key: str):
        value = self.headers.get(key)
        if isinstance(value, str):
            value = value.strip()
            if value.upper() in self.keywords.placeholders:
                return None
        return value

    def first(self, keys: tuple[str, ...]):
        """(keyword, value) of the first keyword with a usable value."""
        for key in keys:
            value = self.value(key)
            if value is not None:
                return key, value
        return None, None

    def text(self, keys: tuple[str, ...]) -> str | None:
        """The first value that is text (a number where text is expected is skipped)."""
        for key in keys:
            value = self.value(key)
            if isinstance(value, str):
                return " ".join(value.split())
        return None


def _observation_start(reader: _Reader, night: dt.date | None) -> tuple[dt.datetime | None, str | None]:
    keywords = reader.keywords
    for key in keywords.date:
        value = reader.value(key)
        if value is None:
            continue
        parsed = obstime.parse_date(value)
        if parsed is None:
            reader.notes.append(f"{key} {value!r} is not a date: ignored")
            continue
        when, has_time = parsed
        if not obstime.accepted(when):
            reader.notes.append(f"{key} {value!r} is outside the years the archive accepts "
                                f"({obstime.FIRST_YEAR} to {obstime.LAST_YEAR}): ignored")
            continue
        source = key
        if not has_time:
            time_key, time_value = reader.first(keywords.time)
            offset = obstime.parse_time_of_day(time_value) if time_key else None
            if offset is None:
                if time_key:
                    reader.notes.append(f"{time_key} {time_value!r} is not a time of day: ignored")
                continue
            when, source = when + offset, f"{key}+{time_key}"
        if night is not None and not obstime.plausible_for_night(when, night):
            reader.notes.append(f"{source} {when:%Y-%m-%dT%H:%M:%S} does not fall in night {night}: ignored")
            continue
        return when, source
    for key in keywords.mjd:
        value = reader.value(key)
        if value is None:
            continue
        when = obstime.from_mjd(value)
        if when is not None and (night is None or obstime.plausible_for_night(when, night)):
            return when, key
        reader.notes.append(f"{key} {value!r} is not a usable MJD: ignored")
    return None, None


# A longer exposure is a broken value, not a long observation: the deepest stacks add up to
# about 10^6 s. The bound keeps the observation's end a date that exists.
MAX_EXPOSURE = 1e8


def _exposure(reader: _Reader) -> float | None:
    key, value = reader.first(reader.keywords.exptime)
    if key is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        reader.notes.append(f"{key} {value!r} is not a number: no exposure time")
        return None
    if reader.keywords.exptime_unit == "ms":
        seconds /= 1000.0
    coadd_key, coadds = reader.first(reader.keywords.coadds)
    if coadd_key is not None and isinstance(coadds, (int, float)) and coadds > 0:
        seconds *= coadds
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_EXPOSURE):
        reader.notes.append(f"{key} {value!r} is not a valid exposure time: ignored")
        return None
    return seconds


def _position(reader: _Reader, meta: Metadata) -> None:
    keywords = reader.keywords
    radesys = reader.text(keywords.radesys)
    _, equinox = reader.first(keywords.equinox)
    headers = reader.headers
    extension = headers.extension
    wcs_header = extension if extension is not None and extension.get("NAXIS", 0) >= 2 else headers.primary
    wcs_frame = (wcs_header.get("RADESYS") or wcs_header.get("RADECSYS") or radesys,
                 wcs_header.get("EQUINOX", equinox))
    footprint = None
    try:
        footprint = wcs_footprint(wcs_header)
        if footprint is not None:
            meta.footprint, _ = skypos.to_icrs(footprint[1], *wcs_frame)
    except skypos.PositionError as exc:
        meta.notes.append(str(exc))

    ra_key, ra_value = reader.first(keywords.ra)
    dec_key, dec_value = reader.first(keywords.dec)
    try:
        if ra_key is not None and dec_key is not None:
            point = skypos.parse_radec(ra_value, dec_value, keywords.ra_unit, keywords.dec_unit)
            converted, note = skypos.to_icrs([point], radesys, equinox)
            if note:
                meta.notes.append(note)
        elif footprint is not None:
            converted, _ = skypos.to_icrs([footprint[0]], *wcs_frame)
            meta.notes.append("position from the WCS (no RA/DEC keywords)")
        else:
            return
    except skypos.PositionError as exc:
        meta.notes.append(f"{exc}: stored without a position")
        return
    meta.ra, meta.dec = converted[0]


def extract(headers: HeaderSet, relpath: str, profiles: tuple[InstrumentProfile, ...],
            generic: KeywordMap) -> Metadata:
    """Normalised metadata of one file from its headers and its path."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        meta = _extract(headers, relpath, profiles, generic)
    # astropy parses card values lazily, so its complaints about bad cards arrive here.
    for message in dict.fromkeys(" ".join(str(w.message).split())[:160] for w in caught):
        meta.notes.append(f"header: {message}")
    return meta


def _extract(headers: HeaderSet, relpath: str, profiles: tuple[InstrumentProfile, ...],
             generic: KeywordMap) -> Metadata:
    place = placement(relpath)
    profile = choose_profile(profiles, generic, place.instrument_dir, headers.get)
    meta = Metadata(notes=list(headers.notes))
    reader = _Reader(headers, profile.keywords, meta.notes)
    keywords = profile.keywords

    meta.object = reader.text(keywords.object)
    meta.telescope = profile.telescope or reader.text(keywords.telescope)
    meta.instrument = profile.instrument or reader.text(keywords.instrument) or place.instrument_dir
    meta.filter = reader.text(keywords.filter)
    meta.program = reader.text(keywords.program)
    raw_type = reader.text(keywords.frame_type)
    meta.frame_type = keywords.frame_type_of(raw_type) if raw_type else None
    meta.exptime = _exposure(reader)

    meta.obs_start, meta.date_source = _observation_start(reader, place.night)
    if meta.obs_start is None and place.night is not None:
        night = place.night
        meta.obs_start = dt.datetime(night.year, night.month, night.day, tzinfo=obstime.UTC)
        meta.date_source = "night directory"
        meta.notes.append(f"no usable observation date in the header: using the night directory ({night})")
    if meta.obs_start is not None:
        meta.obs_end = meta.obs_start + dt.timedelta(seconds=meta.exptime or 0.0)

    _position(reader, meta)
    meta.naxis = _axes(headers)
    return meta


def _axes(headers: HeaderSet) -> list[int | None] | None:
    """NAXIS1 and NAXIS2 of the data (the extension's when the primary holds none)."""
    data = headers.extension if headers.extension is not None and not headers.primary.get("NAXIS") else headers.primary
    sizes = [data.get(f"NAXIS{n}") for n in (1, 2)]
    sizes = [n if isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**31 else None for n in sizes]
    return sizes if any(n is not None for n in sizes) else None
