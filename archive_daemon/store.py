"""Every statement that writes the archive's tables, and the ordered read the scans merge with.

Writes are set-based: a batch of loaded files goes in with one COPY into a temporary
table and one INSERT ... ON CONFLICT, so a batch costs a few round trips, not one per file.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Iterator, Sequence

import psycopg2
import psycopg2.errors
from psycopg2.extras import execute_values

from .db import first_line
from .filekind import MTIME_US
from .watcher import KnownEntry

_COPY_CHUNK = 1 << 20
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
# Errors a row's values cause (a value the column type or pgsphere refuses, a key longer
# than an index entry may be): that row fails, the batch goes in. Anything else is the
# database's trouble, not the file's.
ROW_ERRORS = (psycopg2.DataError, psycopg2.IntegrityError, psycopg2.InternalError,
              psycopg2.errors.ProgramLimitExceeded)
# The longest path a failure record keeps: an index entry holds about 2.7 kB.
MAX_STORED_PATH = 2000

# Columns of a loaded file, in the order rows are built and copied.
FILE_COLUMNS = (
    "root", "path", "size", "mtime", "night", "instrument", "telescope", "object", "obs_start",
    "obs_end", "date_source", "exptime", "frame_type", "filter", "program", "ra", "dec",
    "pos", "footprint", "footprint_circle", "public_date", "header", "notes", "grants", "access_rule",
    "header_frame_type", "naxis",
)
_COLUMN_LIST = ", ".join(FILE_COLUMNS)
# A footprint pgsphere refuses is stored as none (archive_spoly), and then so is its circle:
# searches find a footprint through its circle only.
_UPSERTED = {"footprint": "p.polygon", "footprint_circle": "CASE WHEN p.polygon IS NOT NULL THEN footprint_circle END"}
_UPSERT = f"""
    INSERT INTO files AS f ({_COLUMN_LIST})
    SELECT {", ".join(_UPSERTED.get(c, c) for c in FILE_COLUMNS)}
    FROM incoming, LATERAL (SELECT archive_spoly(footprint) AS polygon) AS p
    ON CONFLICT (root, path) DO UPDATE SET
        {", ".join(f"{c} = excluded.{c}" for c in FILE_COLUMNS[2:])}, ingested_at = now()
    WHERE (f.size, f.mtime) IS DISTINCT FROM (excluded.size, excluded.mtime)
"""
_INCOMING = """
    CREATE TEMPORARY TABLE IF NOT EXISTS incoming (
        root text, path text COLLATE "C", size bigint, mtime timestamptz, night date,
        instrument text, telescope text, object text, obs_start timestamptz, obs_end timestamptz,
        date_source text, exptime double precision, frame_type text, filter text, program text,
        ra double precision, dec double precision, pos spoint, footprint text, footprint_circle scircle,
        public_date timestamptz,
        header text COMPRESSION lz4, notes text, grants text[], access_rule text, header_frame_type text,
        naxis integer[]
    ) ON COMMIT DELETE ROWS
"""


def mtime_of(mtime_us: int) -> dt.datetime:
    """An mtime in microseconds as the exact timestamptz it is stored as (one beyond what a
    timestamp holds, recorded only with its failure, at the nearest it can)."""
    return EPOCH + dt.timedelta(microseconds=min(max(mtime_us, MTIME_US[0]), MTIME_US[1]))


def prefix_clause(prefix: str, column: str = "path") -> tuple[str, dict]:
    """A condition (and its parameters) for a path and everything below it, as an index range."""
    prefix = failure_path(prefix.strip("/"))  # a directory whose name is not UTF-8 is recorded escaped
    if not prefix:
        return "true", {}
    # '0' follows '/' in byte order: [prefix/, prefix0) is everything below the prefix.
    return (f"({column} = %(prefix)s OR ({column} >= %(below)s AND {column} < %(after)s))",
            {"prefix": prefix, "below": prefix + "/", "after": prefix + "0"})


def known_entries(connection, root: str, prefix: str) -> Iterator[KnownEntry]:
    """Archived and failed files under a prefix, in path byte order, streamed."""
    clause, params = prefix_clause(prefix)
    query = f"""
        SELECT path, size, floor(extract(epoch FROM mtime) * 1000000)::bigint, NULL::text
        FROM files WHERE root = %(root)s AND {clause}
        UNION ALL
        SELECT path, size, floor(extract(epoch FROM mtime) * 1000000)::bigint, reason
        FROM ingest_failures WHERE root = %(root)s AND kind = 'file' AND {clause}
        ORDER BY 1
    """
    with connection.cursor(name="known_entries") as cursor:
        cursor.itersize = 20000
        cursor.execute(query, {"root": root, **params})
        for path, size, mtime_us, failure in cursor:
            yield KnownEntry(path, size, mtime_us, failure)


def storable(text: str, limit: int | None = None) -> str:
    """Text as PostgreSQL can hold it: bytes of a name that are not UTF-8 shown as \\xNN, NULs as
    '?', and at most `limit` bytes (cut with '...')."""
    if not text.isascii():
        try:
            raw = text.encode("utf-8", "surrogateescape")  # how os.fsdecode carries such bytes
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "surrogatepass")
        text = raw.decode("utf-8", "backslashreplace")
    text = text.replace("\0", "?")
    if limit is not None and len(text.encode()) > limit:
        text = text.encode()[:limit - 3].decode("utf-8", "ignore") + "..."  # so that storable(storable(t)) == storable(t)
    return text


def failure_path(path: str) -> str:
    """The path a failure is recorded under (see storable); a stored path is its own."""
    return storable(path, MAX_STORED_PATH)


def integers_literal(values) -> str | None:
    """An integer[] value as PostgreSQL reads it; None stays NULL."""
    return None if values is None else "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"


def array_literal(values) -> str:
    """A text[] value as PostgreSQL reads it (COPY's own escaping comes on top)."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def rule_text(decision) -> str:
    """What `access explain` shows of a decision: the rule, then its notes."""
    return "; ".join([decision.rule, *decision.notes])


def _copy_field(value) -> str:
    if value is None:
        return "\\N"
    text = str(value)
    if "\\" in text or "\n" in text or "\r" in text or "\t" in text or "\0" in text:
        text = (text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
                .replace("\0", "?"))  # PostgreSQL text cannot hold a NUL
    return text


def copy_line(row: tuple) -> str:
    """One row (FILE_COLUMNS order) as a line of COPY's text format; built in the workers.

    Headers are 10-20 kB of text with nothing to escape as a rule: checking for the four
    special characters is far cheaper than the csv module quoting every one of them.
    """
    return "\t".join(map(_copy_field, row)) + "\n"


def write_batch(connection, lines: Sequence[str], keys: Sequence[tuple], failures: Sequence[tuple],
                all_new: bool = False) -> list[tuple]:
    """Store loaded files (copy_line lines) and failures (root, path, size, mtime, reason), in one
    transaction; returns the lines the database refused, as failures.

    `keys[i]` is (root, path, size, mtime) of lines[i]. Should a value of one row be one the
    database refuses, the batch is written again row by row and each refused row recorded
    as a failure with the database's reason: one bad row never costs the others.

    `all_new` says that no line's file is archived or recorded as failed yet: such a batch
    (the bulk of a first ingest) is copied straight into `files`, which costs the server
    half as much as the upsert. Should a file have appeared meanwhile, or a footprint be one
    pgsphere rejects, the batch is rolled back to its savepoint and upserted instead.
    """
    refused: list[tuple] = []
    try:
        with connection.cursor() as cursor:
            if lines and not (all_new and _copy_new(cursor, lines)):
                _upsert(cursor, lines)
    except ROW_ERRORS:
        connection.rollback()
        with connection.cursor() as cursor:
            for line, (root, path, size, mtime) in zip(lines, keys):
                cursor.execute("SAVEPOINT one_row")
                try:
                    _upsert(cursor, [line])
                except ROW_ERRORS as exc:
                    cursor.execute("ROLLBACK TO SAVEPOINT one_row")
                    reason = storable(f"the database refused the row: {first_line(exc)}")
                    refused.append((root, failure_path(path), size, mtime, reason))
                else:
                    cursor.execute("RELEASE SAVEPOINT one_row")
    if failures or refused:
        with connection.cursor() as cursor:
            execute_values(cursor, """
                INSERT INTO ingest_failures AS x (root, path, size, mtime, reason) VALUES %s
                ON CONFLICT (root, path) DO UPDATE SET size = excluded.size, mtime = excluded.mtime,
                    reason = excluded.reason, attempts = x.attempts + 1, last_attempt = now()
            """, [*failures, *refused])
            # What is on disk now cannot be archived: an older reading must not be served
            # for it (a file replaced by a link would otherwise keep its row).
            execute_values(cursor, "DELETE FROM files f USING (VALUES %s) AS x (root, path) "
                                   "WHERE f.root = x.root AND f.path = x.path", [r[:2] for r in [*failures, *refused]])
    connection.commit()
    return refused


def _upsert(cursor, lines: Sequence[str]) -> None:
    cursor.execute(_INCOMING)
    cursor.copy_expert(f"COPY incoming ({_COLUMN_LIST}) FROM STDIN", _stream(lines), size=_COPY_CHUNK)
    cursor.execute(_UPSERT)
    cursor.execute("DELETE FROM ingest_failures x USING incoming i WHERE x.root = i.root AND x.path = i.path")
    cursor.execute("DELETE FROM incoming")  # ON COMMIT empties it too; a row-by-row retry needs it empty now


def _stream(lines: Sequence[str]) -> io.BytesIO:
    # Bytes, read a megabyte at a time: a str stream is widened to 4 bytes a character and
    # handed to libpq in 8 kB pieces.
    return io.BytesIO("".join(lines).encode())


def _copy_new(cursor, lines: Sequence[str]) -> bool:
    cursor.execute("SAVEPOINT copy_new")
    try:
        cursor.copy_expert(f"COPY files ({_COLUMN_LIST}) FROM STDIN", _stream(lines), size=_COPY_CHUNK)
    except ROW_ERRORS:
        cursor.execute("ROLLBACK TO SAVEPOINT copy_new")
        return False
    cursor.execute("RELEASE SAVEPOINT copy_new")
    return True


def delete_files(connection, root: str, paths: Sequence[str]) -> None:
    """Forget files that are gone from disk: their rows and any failure records."""
    if paths:
        stored = [failure_path(p) for p in paths]  # a name that is not UTF-8 is recorded escaped
        with connection.cursor() as cursor:
            for table in ("files", "ingest_failures"):
                cursor.execute(f"DELETE FROM {table} WHERE root = %s AND path = ANY(%s)", (root, stored))
    connection.commit()
