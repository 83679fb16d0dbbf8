"""Who may read a file, and from when. Rules in order of precedence, the first that applies decides:

1. the override file of the file's directory (see overrides.py);
2. always-public instruments and file suffixes (all-sky cameras, quick-look images);
3. calibration frames: shared with every program observing on that telescope that night,
   or public at once;
4. the owning program: from the header (PROPID, PROGRAM...), else from the schedule;
5. the configured default for files whose owner is unknown.

A file becomes public at the end of its observing night (local noon, in the site's time
zone: see night.py) plus the proprietary period of its program, else instrument, else telescope,
else the default. Until then only its grants may read it. Never fail open: an override
file that cannot be read or understood, or a directory that cannot be listed, makes the
files it governs not public at all (public_date NULL, no grants: nobody but staff); so
does one that is not owned by one of access.rule_file_owners.
"""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from dataclasses import dataclass, field

from .config import AccessConfig
from .night import observing_night, site_zone
from .obstime import UTC
from .overrides import OverrideCache, Overrides
from .rulefile import owners_under

ALWAYS = dt.datetime(1970, 1, 1, tzinfo=UTC)  # public_date of files public from the start
ALL_OBSERVERS = "all-observers"


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day `months` later, clipped to the end of a shorter month."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, _days_in(year, month)))


def _days_in(year: int, month: int) -> int:
    return ((dt.date(year + month // 12, month % 12 + 1, 1)) - dt.date(year, month, 1)).days


@dataclass(frozen=True)
class Facts:
    """What the rules read about one file (all of it is in its row)."""

    path: str                       # relative to the root
    telescope: str | None
    instrument: str | None
    frame_type: str | None          # as the header says
    program: str | None             # as the header says
    obs_start: dt.datetime | None
    mtime: dt.datetime


@dataclass
class Decision:
    public_date: dt.datetime | None     # None: not public, whatever the date
    grants: tuple[str, ...]
    frame_type: str | None              # an override's obstype, else the header's
    rule: str                           # which rule decided, in words
    night: dt.date                      # the observing night (night.py)
    night_note: str | None = None       # set when the night is only the modification time's guess
    notes: list[str] = field(default_factory=list)
    directory_missing: bool = False     # nothing could be read: a recompute keeps the old decision


@dataclass(frozen=True)
class Schedule:
    """(telescope, night) -> programs observing, as loaded from the database."""

    nights: dict = field(default_factory=dict)   # (lower-case telescope, date) -> tuple of programs

    def programs(self, telescope: str | None, night: dt.date | None) -> tuple[str, ...]:
        return self.nights.get(((telescope or "").lower(), night), ())


class Rules:
    """The access rules of a configuration, with a schedule snapshot and an override cache."""

    def __init__(self, config: AccessConfig, schedule: Schedule, frame_type_of=lambda raw: raw,
                 root_zones: dict[str, str | None] | None = None):
        self.config = config
        self.schedule = schedule
        self.frame_type_of = frame_type_of
        self.root_zones = root_zones or {}  # root path -> the root's own time zone
        self.overrides = OverrideCache(config.rule_file_max_bytes)
        # Pure functions of the configuration, asked for every file: remembered per key.
        self._zones: dict[tuple, zoneinfo.ZoneInfo] = {}
        self._public: dict[tuple, dt.datetime] = {}

    def rule_source(self, root_path: str, directory: str) -> Overrides:
        """The override file in force in a directory of a root, refused unless an allowed owner's."""
        return self.overrides.get(directory, lambda: owners_under(root_path, self.config.rule_file_owners))

    def timezone(self, telescope: str | None, root_path: str | None = None) -> zoneinfo.ZoneInfo:
        key = (telescope, root_path)
        zone = self._zones.get(key)
        if zone is None:
            zone = self._zones[key] = site_zone(self.config, self.root_zones.get(root_path), telescope)
        return zone

    def night(self, root_path: str, facts: Facts) -> tuple[dt.date, str | None]:
        """The file's observing night, and a note when it is a guess."""
        return observing_night(facts.path, facts.obs_start, facts.mtime, self.timezone(facts.telescope, root_path))

    def months(self, facts: Facts, programs: tuple[str, ...]) -> int:
        for table, names in (("programs", programs), ("instruments", (facts.instrument,)),
                             ("telescopes", (facts.telescope,))):
            found = [p.proprietary_months for p in (self.config.setting(table, n) for n in names)
                     if p.proprietary_months is not None]
            if found:
                return max(found)
        return self.config.proprietary_months

    def public_date(self, root_path: str, facts: Facts, night: dt.date, programs: tuple[str, ...]) -> dt.datetime:
        """Noon local time after the night, `months` later."""
        key = (night, programs, facts.instrument, facts.telescope, root_path)
        when = self._public.get(key)
        if when is None:
            day = add_months(night + dt.timedelta(days=1), self.months(facts, programs))
            zone = self.timezone(facts.telescope, root_path)
            when = self._public[key] = dt.datetime(day.year, day.month, day.day, 12, tzinfo=zone).astimezone(UTC)
        return when

    def decide(self, root_path: str, facts: Facts, overrides: Overrides | None = None) -> Decision:
        """The file's decision and night; `overrides`: its directory's rule source, when the
        caller has it at hand (a bulk recompute looks each directory up once)."""
        directory, name = os.path.split(os.path.join(root_path, facts.path))
        if overrides is None:
            overrides = self.rule_source(root_path, directory)
        night, note = self.night(root_path, facts)
        if overrides.error:
            return Decision(None, (), facts.frame_type, "rules unreadable: not public", night, note,
                            [f"access: {overrides.error}"], overrides.missing)
        notes = [f"access: {note}"] if note else []
        frame_type = facts.frame_type
        obstype = overrides.last("obstype", name)
        if obstype is not None:
            frame_type = self.frame_type_of(obstype.values[0])
        scheduled = self.schedule.programs(facts.telescope, night)
        access = overrides.last("access", name)

        def decided(rule: str, grants=(), public=False) -> Decision:
            owners = tuple(g for g in grants if g in scheduled or g == facts.program) or scheduled
            when = ALWAYS if public else self.public_date(root_path, facts, night, owners)
            return Decision(when, tuple(sorted(set(grants))), frame_type, rule, night, note, notes)

        if access is not None:
            if "public" in access.values:
                return decided(f"override: public ({access.where})", public=True)
            names = [n for n in access.values if n != ALL_OBSERVERS]
            if ALL_OBSERVERS in access.values:
                names += scheduled
            return decided(f"override: {' '.join(access.values)} ({access.where})", names)
        suffix = name.lower()
        if (facts.instrument or "").lower() in self.config.public_instruments:
            return decided(f"always-public instrument {facts.instrument}", public=True)
        if any(suffix.endswith(s) for s in self.config.public_suffixes):
            return decided("always-public file suffix", public=True)
        if (frame_type or "").lower() in self.config.calibration_types:
            if self.config.calibrations == "public":
                return decided(f"calibration ({frame_type}): public", public=True)
            owners = scheduled + ((facts.program,) if facts.program else ())
            return decided(f"calibration ({frame_type}): shared with the night's programs", owners)
        if facts.program:
            return decided(f"program {facts.program} (header)", (facts.program,))
        if scheduled:
            return decided(f"program {', '.join(scheduled)} (schedule {facts.telescope} {night})", scheduled)
        if self.config.unknown_owner == "public":
            return decided("owner unknown: public by configuration", public=True)
        return decided("owner unknown: proprietary period")
