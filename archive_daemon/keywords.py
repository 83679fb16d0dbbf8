"""Per-instrument keyword maps: where each metadata value lives in a header, and in what form.

A map lists, for every field, the header keywords to try in order; the first usable value
wins. Instrument profiles adjust the generic map for files that match them (by night-layout
instrument directory and/or header values) and may fix telescope and instrument names.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass, field

from .confread import Section

RA_UNITS = ("auto", "hours", "degrees", "radians")
DEC_UNITS = ("auto", "degrees", "radians")
EXPTIME_UNITS = ("s", "ms")

# Fields whose value is a list of keywords to try, in order.
KEYWORD_FIELDS = (
    "object", "ra", "dec", "equinox", "radesys", "date", "time", "mjd", "exptime",
    "coadds", "frame_type", "filter", "program", "telescope", "instrument",
)


@dataclass(frozen=True)
class KeywordMap:
    object: tuple[str, ...] = ()
    ra: tuple[str, ...] = ()
    dec: tuple[str, ...] = ()
    ra_unit: str = "auto"
    dec_unit: str = "auto"
    equinox: tuple[str, ...] = ()
    radesys: tuple[str, ...] = ()
    date: tuple[str, ...] = ()
    time: tuple[str, ...] = ()
    mjd: tuple[str, ...] = ()
    exptime: tuple[str, ...] = ()
    exptime_unit: str = "s"
    coadds: tuple[str, ...] = ()
    frame_type: tuple[str, ...] = ()
    filter: tuple[str, ...] = ()
    program: tuple[str, ...] = ()
    telescope: tuple[str, ...] = ()
    instrument: tuple[str, ...] = ()
    placeholders: frozenset[str] = frozenset()
    frame_types: tuple[tuple[str, str], ...] = ()

    def frame_type_of(self, raw: str) -> str:
        """Normalise a raw frame type ('ZERO', 'flat field'...) to the archive's vocabulary."""
        value = " ".join(raw.lower().split())
        for pattern, name in self.frame_types:
            if fnmatch.fnmatchcase(value, pattern):
                return name
        return value


def read_keyword_map(section: Section, base: KeywordMap) -> KeywordMap:
    """Read a `keywords:` mapping; fields it does not name keep the values of `base`."""
    changes: dict = {}
    for name in KEYWORD_FIELDS:
        if section.has(name):
            changes[name] = tuple(k.upper() for k in section.strings(name))
    if section.has("ra_unit"):
        changes["ra_unit"] = section.choice("ra_unit", "auto", RA_UNITS)
    if section.has("dec_unit"):
        changes["dec_unit"] = section.choice("dec_unit", "auto", DEC_UNITS)
    if section.has("exptime_unit"):
        changes["exptime_unit"] = section.choice("exptime_unit", "s", EXPTIME_UNITS)
    if section.has("placeholders"):
        changes["placeholders"] = frozenset(v.strip().upper() for v in section.strings("placeholders"))
    if section.has("frame_types"):
        types = section.section("frame_types")
        pairs = []
        for name in types.keys():
            for pattern in types.strings(name):
                pairs.append((pattern.lower(), str(name)))
        types.done()
        changes["frame_types"] = tuple(pairs)
    section.done()
    return dataclasses.replace(base, **changes)


@dataclass(frozen=True)
class InstrumentProfile:
    """Keyword map and fixed names for the files one instrument writes."""

    name: str
    directory: str | None = None
    header: tuple[tuple[str, str], ...] = ()
    telescope: str | None = None
    instrument: str | None = None
    keywords: KeywordMap = field(default_factory=KeywordMap)

    def matches(self, directory: str | None, lookup) -> bool:
        if self.directory is not None:
            if directory is None or not fnmatch.fnmatchcase(directory.lower(), self.directory.lower()):
                return False
        for key, pattern in self.header:
            value = lookup(key)
            if value is None or not fnmatch.fnmatchcase(str(value).strip().lower(), pattern.lower()):
                return False
        return True


def read_profile(section: Section, generic: KeywordMap) -> InstrumentProfile:
    name = section.string("name", required=True)
    directory = section.string("directory")
    header_section = section.section("header")
    header = tuple((str(k).upper(), header_section.string(k, required=True)) for k in header_section.keys())
    header_section.done()
    if directory is None and not header:
        raise section.fail("directory", "a profile needs `directory` or `header` to say which files it covers")
    profile = InstrumentProfile(
        name=name,
        directory=directory,
        header=header,
        telescope=section.string("telescope"),
        instrument=section.string("instrument"),
        keywords=read_keyword_map(section.section("keywords"), generic),
    )
    section.done()
    return profile


def choose_profile(profiles: tuple[InstrumentProfile, ...], generic: KeywordMap,
                   directory: str | None, lookup) -> InstrumentProfile:
    """The first profile that matches the file, else a profile holding the generic map."""
    for profile in profiles:
        if profile.matches(directory, lookup):
            return profile
    return InstrumentProfile(name="generic", keywords=generic)
