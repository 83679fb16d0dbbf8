"""Asynchronous TAP jobs as rows of tap_jobs (migration 0008): what any API worker on any
host knows of a job, and every change of its phase.

A job belongs to its creator, a user by name or an anonymous caller by address; to anyone
else it does not exist. Each change of phase is an UPDATE conditional on the phase it
leaves (and, for the executor, on its own token), with a NOTIFY on `tap_jobs` in the same
transaction: of two workers deciding at once (an abort, the executor finishing) one wins
and the other finds nothing to change, and waiting clients and idle executors hear of it
at once. A job whose executor is gone is ended in ERROR whenever it is read or swept.
Every method ends its transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import re
import secrets
import socket
import stat
import tempfile
from pathlib import Path
from typing import Iterator

import psycopg2
from psycopg2.extras import Json

from archive_daemon.config import ConfigError, IvoaConfig

log = logging.getLogger("api.ivoa.jobs")

PHASES = ("PENDING", "QUEUED", "EXECUTING", "COMPLETED", "ERROR", "ABORTED")
ACTIVE = ("QUEUED", "EXECUTING")  # what ivoa.jobs_per_user counts
HEARTBEAT = 5.0  # seconds between the beats of a running job's executor
STALE = 60.0     # a running job whose executor has not beaten for this long has lost it
HELD = 100       # jobs one caller may keep, whatever their phase: the table is not theirs to fill
CHANNEL = "tap_jobs"
HOST = socket.gethostname()
GONE = ("The job's executor stopped before the query ended (the API was restarted, or its worker "
        "process died); submit the query again.")
_ID = re.compile(r"[0-9a-f]{32}")
_FIELDS = ("id", "owner", "run_id", "phase", "parameters", "base_url", "created_at", "started_at", "ended_at",
           "execution_duration", "destruction", "error", "result_name", "result_size", "result_type",
           "executor_host", "executor_pid", "executor_token", "backend_pid", "backend_start")


def _columns(table: str = "tap_jobs") -> str:
    """What a Job is read from: its fields, whether it is due, whether its executor is silent."""
    return ", ".join([f"{table}.{name}" for name in _FIELDS] + [
        f"{table}.destruction <= now()",
        f"coalesce({table}.heartbeat < now() - interval '{STALE} seconds', true)"])


class Refused(Exception):
    """The caller holds too many jobs: they may ask again once some have ended."""


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who asks: a user, else the address of an anonymous caller."""

    user: str | None
    address: str

    @property
    def condition(self) -> str:
        return "owner = %(user)s" if self.user else "owner IS NULL AND address = %(address)s"

    @property
    def values(self) -> dict:
        return {"user": self.user, "address": self.address}


@dataclasses.dataclass(frozen=True)
class Job:
    id: str
    owner: str | None
    run_id: str | None
    phase: str
    parameters: dict
    base_url: str
    created: dt.datetime
    started: dt.datetime | None
    ended: dt.datetime | None
    duration: int
    destruction: dt.datetime
    error: str | None
    result_name: str | None
    result_size: int | None
    result_type: str | None
    executor_host: str | None
    executor_pid: int | None
    executor_token: str | None
    backend_pid: int | None
    backend_start: dt.datetime | None
    due: bool     # its destruction time has come
    silent: bool  # no heartbeat for STALE seconds

    def executor_gone(self) -> bool:
        return self.phase == "EXECUTING" and (
            self.silent or self.executor_host == HOST and not _process_runs(self.executor_pid))


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now holds the number: ours is gone
        return False
    return True


@dataclasses.dataclass(frozen=True)
class ExecutorId:
    """Who runs a job: a process on a host, and a token of that process's start (pids are reused)."""

    host: str
    pid: int
    token: str

    @classmethod
    def this_process(cls) -> ExecutorId:
        return cls(HOST, os.getpid(), secrets.token_hex(8))


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a job ended: COMPLETED with a result file (name, size, media type), else ERROR."""

    phase: str
    error: str | None = None
    result: tuple[str, int, str] | None = None


def results_directory(settings: IvoaConfig) -> Path:
    """ivoa.results_dir, else archive-tap under the temporary directory."""
    return settings.results_dir or Path(tempfile.gettempdir()) / "archive-tap"


def prepare_results(path: Path) -> None:
    """Create the results directory (0700) if missing; refuse one that another user owns:
    under /tmp anyone could have made it first, to read the results or swap them."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise ConfigError(f"ivoa.results_dir: cannot create {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise ConfigError(f"ivoa.results_dir: {path} is not a directory of this user's own")


class Jobs:
    """The job store; `connection` arguments are psycopg2 connections."""

    def __init__(self, settings: IvoaConfig):
        self.settings = settings
        self.results = results_directory(settings)

    # -- what callers ask -------------------------------------------------------------------

    def create(self, connection, caller: Caller, parameters: dict[str, str], *, base_url: str,
               run_id: str | None, duration: float | None, destruction: dt.datetime | None, run: bool) -> str:
        """A new job, PENDING, or QUEUED when `run`; Refused when the caller holds too many."""
        job_id = secrets.token_hex(16)
        with _transaction(connection) as cursor:
            active, held = self._count(cursor, caller)
            if held >= HELD:
                raise Refused(f"at most {HELD} jobs are kept per caller: delete some of yours first")
            if run:
                self._check_active(active)
            cursor.execute("""
                INSERT INTO tap_jobs (id, owner, address, run_id, phase, parameters, base_url, execution_duration,
                                      destruction)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s,
                        least(coalesce(%s::timestamptz, 'infinity'), now() + %s * interval '1 second'))""",
                           (job_id, caller.user, None if caller.user else caller.address, run_id,
                            "QUEUED" if run else "PENDING", Json(parameters), base_url, self.duration(duration),
                            destruction, self.settings.async_destruction))
            if run:
                _notify(cursor, job_id, "QUEUED")
        return job_id

    def find(self, connection, job_id: str, caller: Caller) -> Job | None:
        """The caller's job, None for any other; ended first if its executor is gone."""
        if not _ID.fullmatch(job_id):
            return None
        found = self._select(connection, f"id = %(id)s AND {caller.condition}", {"id": job_id, **caller.values})
        job = found[0] if found else None
        if job is not None and job.due:
            self.destroy(connection, job.id)
            return None
        if job is not None and job.executor_gone():
            self._executor_lost(connection, job)
            return self.find(connection, job_id, caller)
        return job

    def listing(self, connection, caller: Caller, *, phases: list[str], after: dt.datetime | None,
                last: int | None) -> list[Job]:
        """The caller's jobs, newest first (UWS 1.1's PHASE, AFTER and LAST filters)."""
        where = [caller.condition, "destruction > now()"]
        if phases:
            where.append("phase = ANY(%(phases)s)")
        if after:
            where.append("created_at > %(after)s")
        values = {**caller.values, "phases": phases, "after": after, "last": last}
        jobs = self._select(connection, " AND ".join(where) + " ORDER BY created_at DESC"
                            + (" LIMIT %(last)s" if last is not None else ""), values)
        gone = [job for job in jobs if job.executor_gone()]
        for job in gone:
            self._executor_lost(connection, job)
        return self.listing(connection, caller, phases=phases, after=after, last=last) if gone else jobs

    def update(self, connection, job: Job, *, parameters: dict[str, str], run_id: str | None,
               duration: float | None, destruction: dt.datetime | None) -> bool:
        """Change what was given; the query's parameters and duration only while the job is
        PENDING (False otherwise, and nothing changed)."""
        pending_only = bool(parameters) or duration is not None
        with _transaction(connection) as cursor:
            cursor.execute(f"""
                UPDATE tap_jobs SET parameters = parameters || %s, run_id = coalesce(%s, run_id),
                       execution_duration = coalesce(%s, execution_duration),
                       destruction = least(coalesce(%s::timestamptz, destruction),
                                           created_at + %s * interval '1 second')
                WHERE id = %s {"AND phase = 'PENDING'" if pending_only else ""}""",
                           (Json(parameters), run_id, None if duration is None else self.duration(duration),
                            destruction, self.settings.async_destruction, job.id))
            return cursor.rowcount == 1

    def start(self, connection, job: Job, caller: Caller) -> None:
        """PENDING -> QUEUED, unless the caller has jobs_per_user queued or executing
        (Refused); a job past PENDING stays as it is."""
        with _transaction(connection) as cursor:
            active, _ = self._count(cursor, caller)
            cursor.execute("SELECT phase FROM tap_jobs WHERE id = %s FOR UPDATE", (job.id,))
            row = cursor.fetchone()
            if row is None or row[0] != "PENDING":
                return
            self._check_active(active)
            cursor.execute("UPDATE tap_jobs SET phase = 'QUEUED' WHERE id = %s", (job.id,))
            _notify(cursor, job.id, "QUEUED")

    def abort(self, connection, job: Job) -> None:
        """A job not yet ended ends ABORTED; its query, if running, is cancelled."""
        with _transaction(connection) as cursor:
            _end(cursor, job.id, ("PENDING", "QUEUED", "EXECUTING"), "ABORTED", "The job was aborted.")

    def destroy(self, connection, job_id: str) -> bool:
        """The job's files, then its row; its query cancelled if running. False when a
        file cannot be removed: the row stays, past its destruction time, for the sweep."""
        with _transaction(connection) as cursor:
            cursor.execute("UPDATE tap_jobs SET destruction = least(destruction, now()) WHERE id = %s "
                           "RETURNING phase, backend_pid, backend_start", (job_id,))
            row = cursor.fetchone()
            if row is None:
                return True
            if row[0] == "EXECUTING":
                _stop_backend(cursor, row[1], row[2], "pg_cancel_backend")
            try:
                self.remove_files(job_id)
            except OSError as exc:
                log.warning("job %s: its files cannot be removed, the row stays for now: %s", job_id, exc)
                return False
            cursor.execute("DELETE FROM tap_jobs WHERE id = %s", (job_id,))
            _notify(cursor, job_id, "DELETED")
            return True

    def remove_files(self, job_id: str) -> None:
        """The job's result and the parts an executor was writing."""
        try:
            names = [name for name in os.listdir(self.results) if name.startswith(job_id)]
        except FileNotFoundError:
            return
        for name in names:
            try:
                os.unlink(self.results / name)
            except FileNotFoundError:
                pass

    def duration(self, asked: float | None) -> int:
        """Seconds a job may run: what was asked, at most ivoa.async_duration (UWS's 0,
        "unlimited", and no answer at all get that)."""
        limit = max(1, int(self.settings.async_duration))
        if asked is None or asked <= 0:
            return limit
        return max(1, min(limit, int(-(-asked // 1))))

    # -- what executors do ------------------------------------------------------------------

    def claim(self, connection, executor: ExecutorId) -> Job | None:
        """The oldest QUEUED job, now EXECUTING on this connection's backend, else None."""
        with _transaction(connection) as cursor:
            cursor.execute(f"""
                UPDATE tap_jobs j SET phase = 'EXECUTING', started_at = now(), heartbeat = now(),
                       executor_host = %s, executor_pid = %s, executor_token = %s,
                       backend_pid = a.pid, backend_start = a.backend_start
                FROM pg_stat_activity a
                WHERE a.pid = pg_backend_pid() AND j.id = (
                    SELECT id FROM tap_jobs WHERE phase = 'QUEUED' ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
                RETURNING {_columns("j")}""",
                           (executor.host, executor.pid, executor.token))
            row = cursor.fetchone()
            if row is not None:
                _notify(cursor, row[0], "EXECUTING")
        return None if row is None else Job(*row)

    def finish(self, connection, job_id: str, executor: ExecutorId, outcome: Outcome) -> bool:
        """Record how the job ended, if it is still this executor's to end."""
        name, size, media = outcome.result or (None, None, None)
        with _transaction(connection) as cursor:
            cursor.execute("""
                UPDATE tap_jobs SET phase = %s, ended_at = now(), error = %s, result_name = %s, result_size = %s,
                       result_type = %s
                WHERE id = %s AND phase = 'EXECUTING' AND executor_token = %s""",
                           (outcome.phase, outcome.error, name, size, media, job_id, executor.token))
            if cursor.rowcount:
                _notify(cursor, job_id, outcome.phase)
            return cursor.rowcount == 1

    def beat(self, connection, executor: ExecutorId, running: list[str]) -> set[str]:
        """Heartbeat for the jobs this executor runs; returns those still its own."""
        with _transaction(connection) as cursor:
            cursor.execute("UPDATE tap_jobs SET heartbeat = now() WHERE id = ANY(%s) AND phase = 'EXECUTING' "
                           "AND executor_token = %s RETURNING id", (running, executor.token))
            return {row[0] for row in cursor.fetchall()}

    def requeue(self, connection, executor: ExecutorId, running: list[str]) -> None:
        """Jobs an executor stops running (the API stopping) are QUEUED again for another."""
        with _transaction(connection) as cursor:
            cursor.execute("""
                UPDATE tap_jobs SET phase = 'QUEUED', started_at = NULL, heartbeat = NULL, backend_pid = NULL,
                       backend_start = NULL
                WHERE id = ANY(%s) AND phase = 'EXECUTING' AND executor_token = %s RETURNING id""",
                           (running, executor.token))
            for (job_id,) in cursor.fetchall():
                _notify(cursor, job_id, "QUEUED")

    def sweep(self, connection) -> bool:
        """Remove the jobs whose destruction time has come, end those whose executor is
        gone; returns whether jobs are waiting in the queue."""
        with _transaction(connection) as cursor:
            cursor.execute("SELECT id FROM tap_jobs WHERE destruction <= now() ORDER BY destruction LIMIT 100")
            due = [row[0] for row in cursor.fetchall()]
        for job_id in due:
            self.destroy(connection, job_id)
        for job in self._select(connection, "phase = 'EXECUTING'", {}):
            if job.executor_gone():
                self._executor_lost(connection, job)
        with _transaction(connection) as cursor:
            cursor.execute("SELECT EXISTS (SELECT 1 FROM tap_jobs WHERE phase = 'QUEUED')")
            return cursor.fetchone()[0]

    # -- within -----------------------------------------------------------------------------

    def _select(self, connection, where: str, values: dict) -> list[Job]:
        with _transaction(connection) as cursor:
            cursor.execute(f"SELECT {_columns()} FROM tap_jobs WHERE {where}", values)
            return [Job(*row) for row in cursor.fetchall()]

    def _count(self, cursor, caller: Caller) -> tuple[int, int]:
        """(queued or executing, all) of the caller's jobs, counted under a lock of the
        caller's own, so that two requests at once cannot both take the last place."""
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                       (f"tap_jobs {caller.user}" if caller.user else f"tap_jobs address {caller.address}",))
        cursor.execute(f"SELECT count(*) FILTER (WHERE phase = ANY(%(active)s)), count(*) FROM tap_jobs "
                       f"WHERE {caller.condition}", {"active": list(ACTIVE), **caller.values})
        return cursor.fetchone()

    def _check_active(self, active: int) -> None:
        limit = self.settings.jobs_per_user
        if active >= limit:
            raise Refused(f"at most {limit} jobs may be queued or executing at once per caller "
                          "(ivoa.jobs_per_user): wait for one to end, or abort one")

    def _executor_lost(self, connection, job: Job) -> None:
        with _transaction(connection) as cursor:
            _end(cursor, job.id, ("EXECUTING",), "ERROR", GONE, token=job.executor_token, stop="pg_terminate_backend")
        log.warning("job %s: its executor (%s pid %s) is gone; the job ends in ERROR", job.id, job.executor_host,
                    job.executor_pid)
        self.remove_files(job.id)


@contextlib.contextmanager
def _transaction(connection) -> Iterator:
    """A cursor whose work is committed at the end, rolled back on any error."""
    try:
        with connection.cursor() as cursor:
            yield cursor
        connection.commit()
    except BaseException:
        try:
            connection.rollback()
        except psycopg2.Error:
            pass  # the connection is lost: nothing to roll back, the error says why
        raise


def _end(cursor, job_id: str, leaving: tuple[str, ...], phase: str, error: str, *, token: str | None = None,
         stop: str = "pg_cancel_backend") -> None:
    """Move a job from one of `leaving` to `phase`; stop its query if it was running."""
    cursor.execute(f"""
        WITH old AS (SELECT id, phase, backend_pid, backend_start FROM tap_jobs
                     WHERE id = %s AND phase = ANY(%s) {"AND executor_token = %s" if token else ""} FOR UPDATE)
        UPDATE tap_jobs j SET phase = %s, ended_at = now(), error = %s FROM old WHERE j.id = old.id
        RETURNING old.phase, old.backend_pid, old.backend_start""",
                   (job_id, list(leaving), *([token] if token else []), phase, error))
    row = cursor.fetchone()
    if row is None:
        return
    if row[0] == "EXECUTING":
        _stop_backend(cursor, row[1], row[2], stop)
    _notify(cursor, job_id, phase)


def _stop_backend(cursor, pid: int | None, started: dt.datetime | None, how: str) -> None:
    """Cancel (or terminate) the executor's query: its backend, named by pid and start
    time so that a pid reused since names no other. The API's own role may signal its own
    backends; the ADQL role never gets to."""
    if pid is not None:
        cursor.execute(f"SELECT {how}(pid) FROM pg_stat_activity WHERE pid = %s AND backend_start = %s",
                       (pid, started))


def _notify(cursor, job_id: str, phase: str) -> None:
    cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{job_id} {phase}"))
