"""A synthetic archive of N files for measuring at scale: its rows, its night directories,
and its listing as a reconcile scan would find it on disk.

Twenty years of nights up to today, files spread evenly over them; two telescopes in two
roots (shane: Kast and ShARCS, nine tenths of the files; nickel: its CCD, one tenth);
positions spread evenly over the sky, with the footprints of the imagers' fields (the
spectrograph's files have none); objects named as catalogues name them; a fifth of the
files calibrations. Access is decided by the access rules themselves (twelve months
for programs), so about 5% of the files, the last year's, are proprietary and a recompute
under unchanged rules changes nothing. The paths of a root sort in the order the rows are
numbered, so a listing is a generator in byte order, as the scan yields it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import multiprocessing
import queue
import random
import threading
from pathlib import Path
from typing import Iterator

import psycopg2

from archive_daemon import db
from archive_daemon.access import Facts, Rules
from archive_daemon.skypos import scircle_literal, spoint_literal, spoly_literal
from archive_daemon.store import array_literal, copy_line, rule_text
from archive_daemon.watcher import DiskEntry

YEARS = 20
# Root -> (directory, telescope, instrument, filters), directories in byte order.
INSTRUMENTS = {"shane": (("kast", "Shane", "Kast", (None,)), ("sharcs", "Shane", "ShARCS", ("J", "H", "Ks"))),
               "nickel": (("ccd", "Nickel", "Nickel CCD", ("B", "V", "R", "I")),)}
# Instrument -> the side of its square field in degrees (a footprint), or None (no image).
FIELDS = {"Kast": None, "ShARCS": 20 / 3600, "Nickel CCD": 6.3 / 60}
# By the row number's last digit: nickel for 9, else Kast for even, ShARCS for odd.
PLACES = [("nickel", INSTRUMENTS["nickel"][0]) if k == 9 else ("shane", INSTRUMENTS["shane"][k % 2]) for k in range(10)]
CALIBRATIONS = ("bias", "flat", "arc", "dark")  # a fifth of the files: numbers ending 0 to 3 of 20
COLUMNS = ("root", "path", "size", "mtime", "night", "instrument", "telescope", "object", "obs_start", "obs_end",
           "date_source", "exptime", "frame_type", "filter", "program", "ra", "dec", "pos", "footprint",
           "footprint_circle", "public_date", "header", "grants", "access_rule", "header_frame_type")
EXPOSURES = (1.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0)


class Archive:
    """N files: row r is of night r * nights // N, its root and instrument by PLACES."""

    def __init__(self, n: int, roots: dict[str, Path], last_night: dt.date | None = None):
        self.n, self.roots = n, roots
        self.last_night = last_night or dt.date.today() - dt.timedelta(days=1)
        self.nights = YEARS * 365 + YEARS // 4

    def night(self, index: int) -> dt.date:
        return self.last_night - dt.timedelta(days=self.nights - 1 - index)

    def rows_of_night(self, index: int) -> range:
        return range(-(-index * self.n // self.nights), -(-(index + 1) * self.n // self.nights))

    @staticmethod
    def place(r: int) -> tuple[str, tuple]:
        """(root, instrument entry) of row r."""
        return PLACES[r % 10]

    def path(self, r: int, night: dt.date, directory: str) -> str:
        return f"{night:%Y-%m/%d}/{directory}/r{r:09}.fits"

    @staticmethod
    def obs_start(r: int, night: dt.date) -> dt.datetime:
        return dt.datetime.combine(night + dt.timedelta(days=1), dt.time(2), dt.timezone.utc) + \
            dt.timedelta(seconds=20 * (r % 1000))

    @staticmethod
    def size(r: int) -> int:
        return 2880 * (1000 + r % 64)  # as the listing writes it

    def mtime(self, r: int, night: dt.date) -> dt.datetime:
        return self.obs_start(r, night) + dt.timedelta(seconds=1300)  # as the listing writes it

    def make_directories(self) -> None:
        """The night directories, empty: the access rules look in them for override files."""
        for index in range(self.nights):
            night = self.night(index)
            for root, entries in INSTRUMENTS.items():
                for directory, *_ in entries:
                    (self.roots[root] / f"{night:%Y-%m/%d}" / directory).mkdir(parents=True, exist_ok=True)

    def listing(self, root: str) -> Iterator[DiskEntry]:
        """The files of `root` in byte order of their paths, as the reconcile scan yields them."""
        for index in range(self.nights):
            night = self.night(index)
            start_us = int(self.obs_start(0, night).timestamp()) * 1_000_000
            rows = self.rows_of_night(index)
            for entry in INSTRUMENTS[root]:
                folder = f"{night:%Y-%m/%d}/{entry[0]}/"
                residues = {k for k, place in enumerate(PLACES) if place == (root, entry)}
                for r in rows:
                    if r % 10 in residues:
                        yield DiskEntry(f"{folder}r{r:09}.fits", 2880 * (1000 + r % 64),
                                        start_us + (20 * (r % 1000) + 1300) * 1_000_000)

    def copy_lines(self, rules: Rules, nights: range) -> Iterator[str]:
        """COPY lines (COLUMNS) of the rows of these nights."""
        rng = random.Random(nights.start)
        for index in nights:
            night = self.night(index)
            year, half = night.year, "A" if night.month <= 6 else "B"
            # Without override files, nothing else of a night's files differs to the rules.
            decisions = {}
            for r in self.rows_of_night(index):
                root, (directory, telescope, instrument, filters) = self.place(r)
                path = self.path(r, night, directory)
                kind = CALIBRATIONS[r % 20] if r % 20 < len(CALIBRATIONS) else "object"
                program = f"{year}{half}-{(index * 7 + r % 3) % 40 + 1:03}" if kind == "object" else None
                start, mtime = self.obs_start(r, night), self.mtime(r, night)
                decision = decisions.get((directory, kind, program))
                if decision is None:
                    facts = Facts(path, telescope, instrument, kind, program, start, mtime)
                    decision = decisions[directory, kind, program] = rules.decide(str(self.roots[root]), facts)
                ra, dec = rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1)))
                name = _object_name(rng) if kind == "object" else kind
                exptime = rng.choice(EXPOSURES)
                corners = _field(ra, dec, FIELDS[instrument])
                yield copy_line((
                    root, path, self.size(r), mtime, night, instrument, telescope, name, start,
                    start + dt.timedelta(seconds=exptime), "DATE-OBS", exptime, decision.frame_type,
                    rng.choice(filters), program, ra, dec, spoint_literal(ra, dec),
                    spoly_literal(corners) if corners else None, scircle_literal(corners) if corners else None,
                    decision.public_date, f"OBJECT  = '{name}'", array_literal(decision.grants), rule_text(decision),
                    kind))


def _field(ra: float, dec: float, side: float | None) -> list[tuple[float, float]] | None:
    """The corners of a square field `side` degrees across, centred on (ra, dec)."""
    if side is None:
        return None
    half, stretch = side / 2, 1 / max(math.cos(math.radians(dec)), 0.01)  # a field at a pole: any square
    return [((ra + dx * half * stretch) % 360, dec + dy * half) for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]


def _object_name(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.3:
        return f"NGC {rng.randint(1, 7840)}"
    if kind < 0.4:
        return f"M{rng.randint(1, 110)}"
    if kind < 0.6:
        return f"HD {rng.randint(1, 225300)}"
    if kind < 0.8:
        return f"SN {rng.randint(2005, 2025)}{''.join(rng.choices('abcdefghijklmnopqrstuvwxyz', k=3))}"
    return f"Kepler-{rng.randint(1, 2000)}"


class _Stream:
    """A file-like view of COPY lines for copy_expert, read a megabyte at a time."""

    def __init__(self, lines: Iterator[str]):
        self.lines = lines

    def read(self, size: int = -1) -> str:
        chunk, length = [], 0
        for line in self.lines:
            chunk.append(line)
            length += len(line)
            if length >= size > 0:
                break
        return "".join(chunk)


def load(url: str, archive: Archive, rules: Rules, processes: int = 2) -> None:
    """COPY every row in, a fortieth of the nights at a time, from `processes` processes that
    make the rows (the CPU-bound part) each with a connection of its own."""
    step = max(1, archive.nights // 40)
    parts = [range(first, min(first + step, archive.nights)) for first in range(0, archive.nights, step)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        for _ in pool.imap_unordered(_copy, [(url, archive, rules, nights) for nights in parts]):
            pass


def _copy(task) -> None:
    url, archive, rules, nights = task
    connection = psycopg2.connect(db.libpq_url(url))
    with connection.cursor() as cursor:
        cursor.copy_expert(f"COPY files ({', '.join(COLUMNS)}) FROM STDIN",
                           _Stream(archive.copy_lines(rules, nights)), size=1 << 20)
    connection.commit()
    connection.close()


@contextlib.contextmanager
def without_indexes(url: str):
    """The files table without its secondary indexes while the block runs (a bulk load), then
    with them built again, two at a time (one per core). The primary key stays: ids come in
    order, cheap to index as they come."""
    connection = psycopg2.connect(db.libpq_url(url))
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), c.conname
            FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid
            WHERE i.indrelid = 'files'::regclass AND NOT i.indisprimary""")
        indexes = cursor.fetchall()
        for name, _, constraint in indexes:
            cursor.execute(f"ALTER TABLE files DROP CONSTRAINT {constraint}" if constraint else f"DROP INDEX {name}")
    yield
    # A unique constraint's index is built like the others, then the constraint adopts it.
    todo = queue.SimpleQueue()
    for _, definition, _ in indexes:
        todo.put(definition)
    threads = [threading.Thread(target=_build, args=(url, todo)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with connection.cursor() as cursor:
        for name, _, constraint in indexes:
            if constraint:
                cursor.execute(f"ALTER TABLE files ADD CONSTRAINT {constraint} UNIQUE USING INDEX {name}")
    connection.close()


def _build(url: str, todo: queue.SimpleQueue) -> None:
    connection = psycopg2.connect(db.libpq_url(url))
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute("SET max_parallel_maintenance_workers = 0")  # the other core builds another
        while True:
            try:
                statement = todo.get_nowait()
            except queue.Empty:
                break
            cursor.execute(statement)
    connection.close()
