"""The database connection a daemon writes through, and the advisory lock that makes it the only writer.

Two daemons may point at the same database and mounts (on two hosts, for fail-over). The one
holding a session-level advisory lock writes; the other stands by and takes the lock the
moment the first one's session ends. The writes go through the lock's own connection: if
that connection dies, so does the lock, and this daemon cannot go on writing beside a new
leader. TCP keepalives on both ends make a vanished host's session end within seconds.
"""

from __future__ import annotations

import os
import socket

import psycopg2

from . import db

LOCK_KEY = 7_4120_2026  # the archive's advisory lock (one per database)
NAME_BYTES = 63         # what PostgreSQL keeps of an application_name
_KEEPALIVE = "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3"


def connect(url: str, name: str):
    """A psycopg2 connection that notices a dead server or network within seconds."""
    return psycopg2.connect(db.libpq_url(url), connect_timeout=5, keepalives=1, keepalives_idle=5,
                            keepalives_interval=2, keepalives_count=3, tcp_user_timeout=15000,
                            application_name=name, options=_KEEPALIVE)


def daemon_name() -> str:
    """'archive-daemon HOST PID', the host cut short so that PostgreSQL keeps the name whole:
    the heartbeat finds a daemon's session by it."""
    pid = str(os.getpid())
    room = NAME_BYTES - len(f"archive-daemon  {pid}")
    host = socket.gethostname().encode()[:room].decode(errors="ignore")
    return f"archive-daemon {host} {pid}"


class Leader:
    """One connection; `lead()` tries to take the lock, and holds it for as long as the connection lives."""

    def __init__(self, url: str):
        self.url = url
        self.name = daemon_name()
        self.connection = None
        self.leading = False

    def connect(self) -> None:
        self.close()
        self.connection = connect(self.url, self.name)

    def lead(self) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
            self.leading = cursor.fetchone()[0]
        self.connection.commit()
        return self.leading

    def holder(self) -> str:
        """Who holds the lock, as its application_name says (host and pid)."""
        with self.connection.cursor() as cursor:
            cursor.execute("""
                SELECT a.application_name, a.client_addr FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                WHERE l.locktype = 'advisory' AND l.granted AND l.objid = %s
            """, (LOCK_KEY % 2**32,))
            row = cursor.fetchone()
        self.connection.commit()
        return f"{row[0]} ({row[1] or 'local'})" if row else "nobody (about to take over)"

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except psycopg2.Error:
                pass
        self.connection = None
        self.leading = False
