"""The daemon's link to the database: the leader lock or standing by, backoff while the
database is away, and the heartbeat the API's health check reads.

A database outage is no reason to exit: the link says so in its `state` (for STATUS) and
tries again, waiting twice as long after each failed try, up to MAX_BACKOFF seconds.
"""

from __future__ import annotations

import logging
import time

import psycopg2

from . import db
from .leader import Leader

log = logging.getLogger("archive_daemon.link")

STANDBY_RETRY = 1.0    # how often a standby tries to take the lock
HEARTBEAT = 10.0       # how often a daemon records that it is alive
MAX_BACKOFF = 30.0


class Link:
    """The connection that holds the leader lock, and what STATUS says about the database."""

    def __init__(self, url: str, clock=time.monotonic):
        self.url = url
        self.clock = clock
        self.leader = Leader(url)
        self.state = "connecting"   # ok, standby (...), unreachable: ...
        self.backoff = 1.0
        self.next_attempt = 0.0
        self.next_heartbeat = 0.0

    @property
    def connection(self):
        return self.leader.connection

    @property
    def leading(self) -> bool:
        return self.leader.leading

    def due(self) -> bool:
        """Time to try for the lock (this daemon does not hold it, and is not backing off)."""
        return not self.leader.leading and self.clock() >= self.next_attempt

    def take_lock(self) -> bool:
        """Connect if need be (the schema must be current) and try for the lock."""
        if self.leader.connection is None:
            self.leader.connect()
            db.check_schema_at(self.url)
        return self.leader.lead()

    def leads(self, waiting: int) -> None:
        if self.state.startswith("unreachable"):
            log.info("database reachable again; %d files waiting are being loaded", waiting)
        self.state = "ok"

    def stands_by(self) -> None:
        """Another daemon holds the lock: say who, and try again soon."""
        holder = self.leader.holder()
        state = f"standby (the archive is written by {holder})"
        if self.state != state:  # said once, not at every try
            log.info("standing by: the archive is written by %s", holder)
        self.state = state
        self.next_attempt = self.clock() + STANDBY_RETRY

    def reached(self) -> None:
        self.backoff = 1.0

    def unreachable(self, exc: Exception) -> None:
        """Connecting or taking the lock failed: try again later, each time later still."""
        message = db.first_line(exc) if isinstance(exc, psycopg2.Error) else str(exc)
        if self.state != f"unreachable: {message}":
            log.error("database unavailable: %s; retrying with backoff", message)
        self.state = f"unreachable: {message}"
        self.leader.close()
        self.next_attempt = self.clock() + self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    def lost(self, exc: Exception, waiting: int) -> None:
        """The connection failed while in use (the lock went with it)."""
        message = db.first_line(exc)
        log.error("database lost: %s; %d files keep waiting, retrying with backoff", message, waiting)
        self.state = f"unreachable: {message}"
        self.leader.close()
        self.next_attempt = self.clock() + self.backoff

    def heartbeat(self, status: str) -> None:
        """Every HEARTBEAT seconds, this daemon's row: its role, its STATUS, the time.

        One row per running daemon, updated in place. Rows of daemons whose session has
        ended (stopped, killed, restarted under a new pid) are deleted, so restarts do not
        pile rows up; a daemon that hangs keeps its session and its row, whose age the
        health check shows.
        """
        if self.leader.connection is None or self.clock() < self.next_heartbeat:
            return
        self.next_heartbeat = self.clock() + HEARTBEAT
        with self.leader.connection.cursor() as cursor:
            cursor.execute("""
                INSERT INTO daemon_heartbeat (name, role, status) VALUES (%s, %s, %s)
                ON CONFLICT (name) DO UPDATE SET role = excluded.role, status = excluded.status, beat_at = now()
            """, (self.leader.name, "leader" if self.leader.leading else "standby", status))
            cursor.execute("""
                DELETE FROM daemon_heartbeat WHERE name NOT IN
                    (SELECT application_name FROM pg_stat_activity WHERE application_name IS NOT NULL)
            """)
        self.leader.connection.commit()

    def close(self) -> None:
        self.leader.close()
