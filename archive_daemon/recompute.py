"""Access decisions (and nights) recomputed in bulk, when rules, the schedule, an override
file or a time zone change.

The settings every decision depends on are kept as a digest in access_state.settings when
all files were decided with them, so that a daemon (or an operator) can tell whether the
archive follows the configuration in force, however it got there: a reload, a restart, new
code and configuration shipped together.

Rows are streamed in id order, decided in this process (a few microseconds a file: no
header is read, everything the rules need is in the row, and each directory's rule source
is looked up once), and only the rows whose decision changed are written back, a few
thousand per statement. Every changed row is a new row version in each of the table's
indexes, which costs PostgreSQL more than the deciding costs here: a bulk recompute given
the database's URL hands those writes to WRITERS connections of its own, each chunk its
own transaction, while this thread goes on deciding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import queue
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Iterable

from . import db, rulesources
from .access import Facts, Rules
from .config import Config
from .store import array_literal, copy_line, prefix_clause, rule_text

CHUNK = 5000
WRITERS = 2  # connections writing changed decisions in a bulk recompute: PostgreSQL's share of the work
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
              directory: str | None = None, on_progress: Callable[[], None] = lambda: None,
              url: str | None = None) -> tuple[int, int]:
    """Decide again, and find the night again, for the selected files (`without_night`: those
    with no night yet); returns (files looked at, files changed).

    `directory` selects the files directly in one directory (of `root`). A file whose
    directory is missing (a mount away) keeps its decision: nothing can be read about it.
    `on_progress` is called every few thousand files (the daemon pings its watchdog there).
    With `url` (the database's), changes are written by connections of their own as they
    are found, a chunk a transaction; else in this connection's transaction.
    """
    roots = {r.name: str(r.path) for r in config.roots}
    where, params = _where(root, night, prefix, ids, without_night, directory)
    sources: dict[str, object] = {}  # directory -> its rule source, read once in this pass
    seen = changed = 0
    pending: list[str] = []
    with connection.cursor(name="recompute") as reading, _writer(connection, url) as write:
        reading.itersize = CHUNK
        reading.execute(f"""
            SELECT id, root, path, {FACT_COLUMNS}, public_date, grants, frame_type, access_rule, night
            FROM files WHERE {where} ORDER BY id""", params)
        for (file_id, file_root, path, telescope, instrument, header_type, program, obs_start, mtime,
             public_date, grants, frame_type, rule, stored_night) in reading:
            seen += 1
            if seen % CHUNK == 0:
                on_progress()
            root_path = roots.get(file_root)
            if root_path is None:
                continue  # a root no longer configured: its rows keep their last decision
            folder = os.path.dirname(os.path.join(root_path, path))
            overrides = sources.get(folder)
            if overrides is None:
                overrides = sources[folder] = rules.rule_source(root_path, folder)
            facts = Facts(path, telescope, instrument, header_type, program, obs_start, mtime)
            decision = rules.decide(root_path, facts, overrides)
            if decision.directory_missing:
                continue
            new = (decision.public_date, list(decision.grants), decision.frame_type, rule_text(decision),
                   decision.night)
            if new != (public_date, sorted(grants), frame_type, rule, stored_night):
                changed += 1
                pending.append(copy_line((file_id, decision.public_date, array_literal(decision.grants),
                                          decision.frame_type, new[3], new[4])))
            if len(pending) >= CHUNK:
                write(pending)
                pending = []
        if pending:
            write(pending)
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


def decide_all(connection, config: Config, rules: Rules, on_progress: Callable[[], None] = lambda: None,
               url: str | None = None) -> tuple[int, int]:
    """Decide again for every file, and read every recorded rule source again (a new size cap
    or owner list changes which ones fail); then note these settings as those followed.
    `url`: as for recompute."""
    seen, changed = recompute(connection, config, rules, on_progress=on_progress, url=url)
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


_DECIDED = """CREATE TEMPORARY TABLE IF NOT EXISTS decided (
    id bigint, public_date timestamptz, grants text[], frame_type text, access_rule text, night date
) ON COMMIT DELETE ROWS"""


def _write(cursor, lines: list[str]) -> None:
    cursor.execute(_DECIDED)
    cursor.copy_expert("COPY decided FROM STDIN", io.StringIO("".join(lines)))
    cursor.execute("""
        UPDATE files f SET public_date = d.public_date, grants = d.grants, frame_type = d.frame_type,
                           access_rule = d.access_rule, night = d.night
        FROM decided d WHERE f.id = d.id""")
    cursor.execute("TRUNCATE decided")


@contextlib.contextmanager
def _writer(connection, url: str | None):
    """A function that writes a chunk of changed decisions (COPY lines of `decided`)."""
    if url is None:
        with connection.cursor() as cursor:
            yield lambda lines: _write(cursor, lines)
        return
    opened: list = []
    idle = queue.SimpleQueue()  # one connection for each writer thread at work

    def write_committed(lines: list[str]) -> None:
        own = idle.get()
        try:
            with own.cursor() as cursor:
                _write(cursor, lines)
            own.commit()
        finally:
            idle.put(own)

    in_flight: set[Future] = set()

    def submit(lines: list[str]) -> None:
        while len(in_flight) >= 2 * WRITERS:  # a bounded backlog: memory stays flat
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            in_flight.difference_update(done)
            for future in done:
                future.result()  # a failed write fails the recompute
        in_flight.add(pool.submit(write_committed, lines))

    pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="recompute-writer")
    try:
        for _ in range(WRITERS):
            opened.append(db.connect(url))
            idle.put(opened[-1])
        yield submit
        for future in in_flight:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for own in opened:
            own.close()
