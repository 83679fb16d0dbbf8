"""Whether the API's reads may go to a streaming replica (`database.read_url`) right now.

A replica's delay cannot be read off the replica alone: `now() - pg_last_xact_replay_timestamp()`
grows on an idle primary that commits nothing. So each worker process now and then notes
the primary's WAL insert position with the time it began to ask; once the replica has
replayed past that position, it holds every transaction the primary had committed by then.
Reads go to the replica only while the newest such time is at most `database.max_replica_lag`
seconds old. That makes the bound exact and independent of clocks, load and
synchronous_commit: a request the replica answers sees everything committed on the
primary `max_replica_lag` seconds before the request took its connection, grants removed,
tokens revoked and users disabled included.

Each check commits an empty transaction on the primary (an xid, a commit record of a few
dozen bytes): the last WAL an idle primary wrote may sit in a page it has not flushed, out
of the replica's sight, and this commit flushes it, so the position noted is always
reached. A check is these two short round trips, made by the first request that finds one
due, at most every CHECK_INTERVAL seconds per worker, never per search. A replica that does
not answer is read no more, and tried again after a back-off that doubles up to MAX_RETRY.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

import psycopg2
import sqlalchemy as sa

from archive_daemon import db

log = logging.getLogger("api.replica")

CHECK_INTERVAL = 2.0   # seconds between checks, at most; a quarter of max_replica_lag when shorter
FIRST_RETRY = 1.0      # seconds before a replica that did not answer is tried again
MAX_RETRY = 15.0

# The commit must not wait for a synchronous standby, which may be the replica that is down.
_PRIMARY = """SET LOCAL synchronous_commit = local;
    SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn, system_identifier, pg_current_xact_id()
    FROM pg_control_system()"""
# NULL on a server that is not in recovery: a primary, or a replica since promoted.
_REPLICA = "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn, system_identifier FROM pg_control_system()"
_FAILURES = (psycopg2.Error, sa.exc.DBAPIError, sa.exc.TimeoutError)


class Replica:
    """A streaming replica of the primary, and what the last check found of it."""

    def __init__(self, engine: sa.Engine, primary: sa.Engine, max_lag: float, clock=time.monotonic):
        self.engine = engine
        self.primary = primary
        self.max_lag = max_lag
        self.clock = clock
        self.interval = min(CHECK_INTERVAL, max_lag / 4)
        self.fresh_as_of: float | None = None  # it holds every commit the primary made before this time
        self.problem: str | None = "not checked yet"
        self.answering_since: float | None = None  # since it last came back, or was first checked
        self.said = None                       # the state last logged
        self.samples = collections.deque()     # (time, the primary's WAL insert position), oldest first
        self.next_check = 0.0
        self.retry = FIRST_RETRY
        self._checking = threading.Lock()

    def usable(self) -> bool:
        """Whether a read may go to the replica now; checks it first when a check is due."""
        if self.clock() >= self.next_check and self._checking.acquire(blocking=False):
            try:
                self._check()
            finally:
                self._checking.release()
        fresh_as_of = self.fresh_as_of
        return fresh_as_of is not None and self.clock() - fresh_as_of <= self.max_lag

    def unreachable(self, exc: Exception) -> None:
        """The replica failed to answer: read the primary until the back-off has passed."""
        self.problem = f"unreachable: {db.first_line(exc)}"
        self.fresh_as_of = self.answering_since = None
        self.next_check = self.clock() + self.retry
        self.retry = min(self.retry * 2, MAX_RETRY)
        self._say()

    def status(self) -> dict:
        """For the health check: the replica's state and how far behind it may be, in seconds."""
        fresh_as_of = self.fresh_as_of
        lag = None if fresh_as_of is None else round(self.clock() - fresh_as_of, 1)
        return {"state": self._state(), "lag_s": lag}

    def _state(self) -> str:
        if self.problem:
            return self.problem
        now, fresh_as_of = self.clock(), self.fresh_as_of
        if fresh_as_of is not None and now - fresh_as_of <= self.max_lag:
            return "in use"
        since = self.answering_since
        if fresh_as_of is None and since is not None and now - since <= self.max_lag:
            return "catching up"  # no verdict yet: a first check can never find it current, a second can
        return "lagging"

    def _check(self) -> None:
        asked = self.clock()  # before the primary is asked: the position it gives covers what was committed by then
        self.next_check = asked + self.interval
        try:
            position, system, _ = _one_row(self.primary, _PRIMARY)
        except _FAILURES:
            return  # nothing shows the replica current, so it ages out of use; requests report the primary
        self.samples.append((asked, position))
        try:
            replayed, replica_system = _one_row(self.engine, _REPLICA)
        except _FAILURES as exc:
            self.unreachable(exc)
            return
        self.retry = FIRST_RETRY
        if replayed is None or replica_system != system:
            self.fresh_as_of = self.answering_since = None
            self.problem = "not a standby of the primary"
            self.samples.clear()
            self.next_check = asked + MAX_RETRY
            self._say()
            return
        self.problem = None
        self.answering_since = self.answering_since or asked
        while self.samples and self.samples[0][1] <= replayed:
            self.fresh_as_of = self.samples.popleft()[0]
        while self.samples and self.samples[0][0] < asked - self.max_lag:
            self.samples.popleft()  # reaching these could no longer put the replica in use
        self._say()

    def _say(self) -> None:
        """Log each change of state once."""
        state = self._state()
        if state == self.said:
            return
        self.said = state
        if state == "in use":
            log.info("reading from the replica")
        elif state == "catching up":
            log.info("the replica answers: reading the primary until it has caught up")
        elif state == "lagging":
            log.warning("the replica is more than database.max_replica_lag (%g s) behind: reading the primary",
                        self.max_lag)
        else:
            log.warning("the replica is %s: reading the primary", state)


def _one_row(engine: sa.Engine, query: str) -> tuple:
    connection = engine.raw_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(query)
            row = cursor.fetchone()
        connection.commit()
        return row
    finally:
        connection.close()
