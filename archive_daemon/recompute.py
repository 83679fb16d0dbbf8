"""Access decisions (and nights) recomputed in bulk, when rules, the schedule, an override
file or a time zone change.

The settings every decision depends on are kept as a digest in access_state.settings when
all files were decided with them, so that a daemon (or an operator) can tell whether the
archive follows the configuration in force, however it got there: a reload, a restart, new
code and configuration shipped together.

Rows are streamed in id order, decided in this process (a few microseconds a file: no
header is read, everything the rules need is in the row), and only the rows whose
decision changed are written back, a few thousand per statement.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from typing import Callable, Iterable

from . import rulesources
from .access import Facts, Rules
from .config import Config
from .store import array_literal, copy_line, prefix_clause, rule_text

CHUNK = 5000
# What access.Facts needs of a row, after the path, in its order.
FACT_COLUMNS = "telescope, instrument, header_frame_type, program, obs_start, mtime"


def _where(root: str | None, night, prefix: str | None, ids: Iterable[int] | None,
           without_night: bool, directory: str | None = None) -> tuple[str, dict]:
    clauses, params = ["night IS NULL" if without_night else "true"], {}
    if directory is not None:  # the files directly in it: an index range, then no further '/'
        clause, prefix_params = prefix_clause(directory)
        clauses.append(clause)
        params.update(prefix_params)
        clauses.append("strpos(substr(path, %(start)s), '/') = 0")
        params["start"] = len(directory) + 2 if directory else 1
    if root is not None:
        clauses.append("root = %(root)s")
        params["root"] = root
    if night is not None:
        clauses.append("night = %(night)s")
        params["night"] = night
    if prefix:
        clause, prefix_params = prefix_clause(prefix)
        clauses.append(clause)
        params.update(prefix_params)
    if ids is not None:
        clauses.append("id = ANY(%(ids)s)")
        params["ids"] = list(ids)
    return " AND ".join(clauses), params


def recompute(connection, config: Config, rules: Rules, root: str | None = None, night=None,
              prefix: str | None = None, ids: Iterable[int] | None = None, without_night: bool = False,
              directory: str | None = None,
              on_progress: Callable[[], None] = lambda: None) -> tuple[int, int]:
    """Decide again, and find the night again, for the selected files (`without_night`: those
    with no night yet); returns (files looked at, files changed).

    `directory` selects the files directly in one directory (of `root`). A file whose
    directory is missing (a mount away) keeps its decision: nothing can be read about it.
    `on_progress` is called every few thousand files (the daemon pings its watchdog there).
    """
    roots = {r.name: str(r.path) for r in config.roots}
    where, params = _where(root, night, prefix, ids, without_night, directory)
    seen = changed = 0
    pending: list[str] = []
    with connection.cursor(name="recompute") as reading, connection.cursor() as writing:
        reading.itersize = CHUNK
        reading.execute(f"""
            SELECT id, root, path, {FACT_COLUMNS}, public_date, grants, frame_type, access_rule, night
            FROM files WHERE {where} ORDER BY id""", params)
        writing.execute("""
            CREATE TEMPORARY TABLE IF NOT EXISTS decided (
                id bigint, public_date timestamptz, grants text[], frame_type text, access_rule text, night date
            ) ON COMMIT DELETE ROWS""")
        for (file_id, file_root, path, telescope, instrument, header_type, program, obs_start, mtime,
             public_date, grants, frame_type, rule, stored_night) in reading:
            seen += 1
            if seen % CHUNK == 0:
                on_progress()
            if file_root not in roots:
                continue  # a root no longer configured: its rows keep their last decision
            facts = Facts(path, telescope, instrument, header_type, program, obs_start, mtime)
            decision = rules.decide(roots[file_root], facts)
            if decision.directory_missing:
                continue
            new = (decision.public_date, list(decision.grants), decision.frame_type, rule_text(decision),
                   rules.night(roots[file_root], facts)[0])
            if new != (public_date, sorted(grants), frame_type, rule, stored_night):
                changed += 1
                pending.append(copy_line((file_id, decision.public_date, array_literal(decision.grants),
                                          decision.frame_type, new[3], new[4])))
            if len(pending) >= CHUNK:
                _write(writing, pending)
        _write(writing, pending)
    connection.commit()
    return seen, changed


def settings_fingerprint(config: Config) -> str:
    """A digest of the configuration that decides access and nights: the access section, the
    roots (their paths hold the override files, their time zones make the nights) and the
    frame-type vocabulary an override's obstype is read with."""
    settings = {"access": dataclasses.asdict(config.access),
                "roots": sorted((r.name, str(r.path), r.timezone) for r in config.roots),
                "frame_types": config.keywords.frame_types}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def settings_changed(connection, config: Config) -> bool:
    """Whether the archive's decisions were made with other settings (or unknown ones)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT settings FROM access_state")
        stored = cursor.fetchone()[0]
    connection.commit()
    return stored != settings_fingerprint(config)


def decide_all(connection, config: Config, rules: Rules,
               on_progress: Callable[[], None] = lambda: None) -> tuple[int, int]:
    """Decide again for every file, and read every recorded rule source again (a new size cap
    or owner list changes which ones fail); then note these settings as those followed."""
    seen, changed = recompute(connection, config, rules, on_progress=on_progress)
    roots = {r.name: str(r.path) for r in config.roots}
    with connection.cursor() as cursor:
        cursor.execute("SELECT root, directory FROM rule_sources ORDER BY 1, 2")
        recorded = cursor.fetchall()
    for root, directory in recorded:
        if root in roots:
            source = rules.rule_source(roots[root], os.path.join(roots[root], directory))
            if not source.missing:  # a mount away: kept as recorded until it is back
                rulesources.record(connection, root, roots[root], directory, source)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE access_state SET settings = %s", (settings_fingerprint(config),))
    connection.commit()
    return seen, changed


def decide_directory(connection, config: Config, rules: Rules, root: str, directory: str,
                     on_progress: Callable[[], None] = lambda: None) -> tuple[int, int, str | None]:
    """Decide again for the files of a directory whose rule source changed, and record what
    they were decided from; returns (files looked at, changed, the rule source's error)."""
    if not rulesources.nameable(directory):
        return 0, 0, None
    root_path = str(config.root(root).path)
    overrides = rules.rule_source(root_path, os.path.join(root_path, directory))
    seen, changed = recompute(connection, config, rules, root=root, directory=directory, on_progress=on_progress)
    rulesources.record(connection, root, root_path, directory, overrides)
    connection.commit()
    return seen, changed, overrides.error


def _write(cursor, lines: list[str]) -> None:
    if not lines:
        return
    cursor.copy_expert("COPY decided FROM STDIN", io.StringIO("".join(lines)))
    cursor.execute("""
        UPDATE files f SET public_date = d.public_date, grants = d.grants, frame_type = d.frame_type,
                           access_rule = d.access_rule, night = d.night
        FROM decided d WHERE f.id = d.id""")
    cursor.execute("TRUNCATE decided")
    lines.clear()
