"""The observing schedule: which programs observe on which telescope each night.

`archive-daemon schedule load FILE` reads CSV (`telescope,night,program`, a header line
allowed) or YAML (a list of {telescope, night, program}). For every (telescope, night) in
the file, the programs listed replace those the database had; other nights are left alone.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import yaml

from . import rulefile
from .access import Rules, Schedule
from .config import Config, ConfigError


class ScheduleError(ConfigError):
    """A schedule file that cannot be read; the message names the file and the line."""


def read_file(path: Path, max_bytes: int = rulefile.DEFAULT_MAX_BYTES) -> list[tuple[str, dt.date, str]]:
    """The schedule's rows; read as every rule file is (rulefile.py), so a FIFO, a link or a
    huge file is refused, never waited on or read whole."""
    try:
        text, _, _ = rulefile.read_text(str(path), max_bytes)
    except rulefile.RuleFileError as exc:
        raise ScheduleError(str(exc)) from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text) or []
        except yaml.YAMLError:
            raise ScheduleError(f"{path}: not valid YAML") from None
        if not isinstance(data, list):
            raise ScheduleError(f"{path}: must be a list of {{telescope, night, program}}")
        entries = [(f"entry {i}", e if isinstance(e, dict) else {}) for i, e in enumerate(data, 1)]
        rows = [(where, [e.get("telescope"), e.get("night"), e.get("program")]) for where, e in entries]
    else:
        rows = [(f"line {i}", r) for i, r in enumerate(csv.reader(io.StringIO(text)), 1)
                if r and not r[0].lstrip().startswith("#")]
        if rows and [c.strip().lower() for c in rows[0][1]] == ["telescope", "night", "program"]:
            rows = rows[1:]
    out = []
    for where, fields in rows:
        if len(fields) != 3 or not all(str(f or "").strip() for f in fields):
            raise ScheduleError(f"{path} {where}: expected telescope, night, program")
        if any("\0" in str(f) for f in fields):  # PostgreSQL text cannot hold it
            raise ScheduleError(f"{path} {where}: contains a NUL character")
        telescope, night, program = (str(f).strip() if not isinstance(f, dt.date) else f for f in fields)
        try:
            night = night if isinstance(night, dt.date) else dt.date.fromisoformat(night)
        except ValueError:
            raise ScheduleError(f"{path} {where}: night {night!r} is not a date (YYYY-MM-DD)") from None
        out.append((telescope, night, program))
    return out


def store(connection, rows: list[tuple[str, dt.date, str]]) -> list[tuple[str, dt.date]]:
    """Replace the programs of each (telescope, night) in `rows`; returns those nights."""
    nights = sorted({(t, n) for t, n, _ in rows})
    with connection.cursor() as cursor:
        for program in sorted({p for _, _, p in rows}):
            cursor.execute("INSERT INTO principals (name, kind) VALUES (%s, 'program') ON CONFLICT DO NOTHING",
                           (program,))
            cursor.execute("SELECT kind FROM principals WHERE name = %s", (program,))
            if cursor.fetchone()[0] != "program":
                connection.rollback()
                raise ScheduleError(f"{program!r} is a user, not a program")
        for telescope, night in nights:
            cursor.execute("DELETE FROM schedule WHERE lower(telescope) = lower(%s) AND night = %s", (telescope, night))
        for telescope, night, program in sorted(set(rows)):
            cursor.execute("INSERT INTO schedule (telescope, night, program) VALUES (%s, %s, %s)",
                           (telescope, night, program))
        bump_version(cursor)
    connection.commit()
    return nights


def bump_version(cursor) -> None:
    """Tell running daemons that the access inputs in the database changed."""
    cursor.execute("UPDATE access_state SET version = version + 1")


def version(connection) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT version FROM access_state")
        value = cursor.fetchone()[0]
    connection.commit()
    return value


def snapshot(connection) -> Schedule:
    nights: dict = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT lower(telescope), night, program FROM schedule ORDER BY 1, 2, 3")
        for telescope, night, program in cursor:
            nights[(telescope, night)] = nights.get((telescope, night), ()) + (program,)
    connection.commit()
    return Schedule(nights)


def current_rules(connection, config: Config) -> Rules:
    """The configured rules with the schedule as the database holds it now."""
    return Rules(config.access, snapshot(connection), config.keywords.frame_type_of,
                 {str(root.path): root.timezone for root in config.roots})
