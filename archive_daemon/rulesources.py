"""What each directory's access decisions were made from, kept so that a scan sees changes.

Override files change while nobody watches (the daemon stopped, a polled root's old
nights, permissions changed by hand). Every directory governed by a rule source has a row
in `rule_sources` with its fingerprint: the override file in force and its sha256, or the
error that makes its files fail closed. A scan lists every directory anyway; comparing the
fingerprints of the directories it saw, and of those recorded, with what is on disk now
names the directories whose files must be decided again. A rule source that fails is also
an `ingest_failures` row (kind 'rules'), so it is listed with the files that fail.
"""

from __future__ import annotations

import os
from typing import Iterable

from .overrides import Overrides, read
from .store import prefix_clause


def recorded(connection, root: str, prefix: str) -> dict[str, str]:
    """directory -> fingerprint, for the rule sources recorded under a prefix."""
    clause, params = prefix_clause(prefix, "directory")
    if prefix.strip("/"):
        # the directory holding the prefix governs it, should the prefix be a file
        clause = f"({clause} OR directory = %(parent)s)"
        params["parent"] = os.path.dirname(prefix.strip("/"))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT directory, fingerprint FROM rule_sources WHERE root = %(root)s AND {clause}",
                       {"root": root, **params})
        return dict(cursor.fetchall())


def errors(connection, root: str, prefix: str) -> list[str]:
    """Why directories under a prefix fail closed, as recorded."""
    clause, params = prefix_clause(prefix, "directory")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT error FROM rule_sources WHERE root = %(root)s AND error IS NOT NULL AND {clause} "
                       "ORDER BY directory", {"root": root, **params})
        return [error for error, in cursor.fetchall()]


def nameable(directory: str) -> bool:
    """Whether the database can name `directory`: one whose name is not UTF-8 holds no file
    that can be archived (each is a failure, "the file name is not valid UTF-8"), so there is
    no decision to keep current there."""
    try:
        directory.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode keeps such bytes as lone surrogates
        return False
    return True


def changed(connection, root_name: str, root_path: str, prefix: str, seen: Iterable[str],
            max_bytes: int) -> list[str]:
    """The directories, among those a scan of `prefix` saw rule sources in and those recorded,
    whose rule source is not what their files were decided from."""
    before = recorded(connection, root_name, prefix)
    out = []
    for directory in sorted({d for d in seen if nameable(d)} | before.keys()):
        now = read(os.path.join(root_path, directory), max_bytes)
        if now.missing:
            if directory in before:
                out.append(directory)  # only forgotten: its files keep their decisions until it is back
        elif now.fingerprint != before.get(directory):
            out.append(directory)
    return out


def record(connection, root_name: str, root_path: str, directory: str, overrides: Overrides) -> None:
    """Remember what the files of `directory` were just decided from (nothing: forget it)."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM rule_sources WHERE root = %s AND directory = %s", (root_name, directory))
        # the directory's own row (it could not be listed) or its rule file's
        cursor.execute("""
            DELETE FROM ingest_failures WHERE root = %(root)s AND kind = 'rules' AND (path = %(d)s OR
                (regexp_replace(path, '/?[^/]*$', '') = %(d)s AND path ~ '(^|/)override[^/]*$'))
        """, {"root": root_name, "d": directory})
        if overrides.fingerprint is None or overrides.missing:
            return
        cursor.execute("INSERT INTO rule_sources (root, directory, fingerprint, error) VALUES (%s, %s, %s, %s)",
                       (root_name, directory, overrides.fingerprint, overrides.error))
        if overrides.error is None:
            return
        source = os.path.relpath(overrides.source, root_path) if overrides.source else directory
        source = "" if source == "." else source
        try:
            st = os.lstat(overrides.source)
            size, mtime = st.st_size, st.st_mtime_ns / 1e9
        except (OSError, TypeError):
            size, mtime = 0, 0.0
        cursor.execute("""
            INSERT INTO ingest_failures AS x (root, path, size, mtime, reason, kind)
            VALUES (%s, %s, %s, to_timestamp(%s), %s, 'rules')
            ON CONFLICT (root, path) DO UPDATE SET size = excluded.size, mtime = excluded.mtime,
                reason = excluded.reason, kind = 'rules', attempts = x.attempts + 1, last_attempt = now()
        """, (root_name, source, size, mtime, overrides.error))


def broken(connection) -> tuple[int, str | None]:
    """How many directories fail closed for an unusable rule source, and one such error."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), min(error) FROM rule_sources WHERE error IS NOT NULL")
        count, example = cursor.fetchone()
    connection.commit()
    return count, example
