"""Asynchronous TAP jobs run inside each API worker process: two executor threads, and a
monitor thread that listens for job changes, beats the heartbeat of the jobs running here,
and sweeps (destruction times come, executors gone).

Threads in the API rather than a service of their own: a job's whole state is in
PostgreSQL (jobs.py), so any worker on any host may run any job, and nothing else needs
deploying. Each job runs on a connection of its own, outside the request pool, so that
long jobs never starve searches. The threads start in the worker process (gunicorn loads
the application after forking); a worker that stops puts its running jobs back in the queue.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import select
import threading
import time
from typing import IO, Callable

import psycopg2
import sqlalchemy as sa

from archive_daemon.config import Config, IvoaConfig
from archive_daemon.visibility import principals_of

from . import tap, votable
from .jobs import CHANNEL, HEARTBEAT, ExecutorId, Job, Jobs, Outcome, prepare_results
from .query import QueryError, run_adql

log = logging.getLogger("api.ivoa.executor")

THREADS = 2  # jobs one worker process runs at once
INTERNAL = "The job failed on an internal error; the service's log tells its administrators more."

# Runs a job as the caller with `principals` and writes its result; returns its media type.
Work = Callable[[object, list[str], Job, IO[bytes]], str]


def run_query(connection, principals: list[str], job: Job, out: IO[bytes], *, settings: IvoaConfig) -> str:
    """A TAP job: its ADQL query, run for at most its execution duration."""
    asked = tap.parameters({name: [value] for name, value in job.parameters.items()}, settings)
    result = run_adql(connection, principals, asked.query, maxrec=asked.maxrec, timeout=job.duration,
                      base_url=job.base_url, authority=settings.authority)
    votable.write(result, out, asked.response_format, query=asked.query, run_id=job.run_id)
    return votable.format_of(asked.response_format)[1]


class Changes:
    """Who waits for which job to change (UWS's WAIT), woken when the monitor hears of it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Event]] = {}

    def watch(self, job_id: str) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._waiting.setdefault(job_id, set()).add(event)
        return event

    def unwatch(self, job_id: str, event: threading.Event) -> None:
        with self._lock:
            events = self._waiting.get(job_id, set())
            events.discard(event)
            if not events:
                self._waiting.pop(job_id, None)

    def changed(self, job_id: str) -> None:
        with self._lock:
            for event in self._waiting.get(job_id, ()):
                event.set()


class Service:
    """The job store, the changes waited for, and (once started) the threads that run jobs."""

    def __init__(self, config: Config, engine: sa.Engine, work: Work | None = None):
        self.store = Jobs(config.ivoa)
        self.changes = Changes()
        self.shared = config.api.x_sendfile  # results read by the front end (X-Sendfile) too
        self.max_body = config.api.max_body_bytes  # of a request that creates or changes a job
        self.work = work or functools.partial(run_query, settings=config.ivoa)
        # Connections of their own, with none of the request pool's settings (its statement
        # timeout); the server checks that their client lives on, so that the query of a
        # worker killed mid-job stops within seconds even when nobody else stops it.
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        check = f"-c client_connection_check_interval={round(HEARTBEAT * 1000)}"
        cparams.update(options=f"{cparams.get('options', '')} {check}".strip(), application_name="archive tap jobs")
        self._connect = functools.partial(psycopg2.connect, *cargs, **cparams)
        self.identity = ExecutorId.this_process()
        self.running: dict[str, object] = {}  # job id -> the connection its query runs on
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.queued = threading.Event()
        self.executors: list[threading.Thread] = []

    def start(self) -> None:
        """Run jobs in this process from now on, until it exits (or stop())."""
        prepare_results(self.store.results)
        threading.Thread(target=self._monitor, name="tap-monitor", daemon=True).start()
        self.executors = [threading.Thread(target=self._execute, name=f"tap-executor-{n}", daemon=True)
                          for n in range(THREADS)]
        for thread in self.executors:
            thread.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        """Claim nothing more; the jobs running here go back to the queue, their queries cancelled."""
        with self.lock:
            if self.stopping.is_set():
                return
            self.stopping.set()
            running = dict(self.running)
        self.queued.set()
        if running:
            try:
                connection = self._connect()
                try:
                    self.store.requeue(connection, self.identity, list(running))
                finally:
                    connection.close()
            except psycopg2.Error as exc:  # the heartbeat stops: other workers end them in ERROR
                log.warning("tap jobs: cannot put the running jobs back in the queue: %s", exc)
            for connection in running.values():
                _cancel(connection)
        deadline = time.monotonic() + HEARTBEAT
        for thread in self.executors:  # the monitor notices within a heartbeat
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- executor threads -------------------------------------------------------------------

    def _execute(self) -> None:
        while not self.stopping.is_set():
            if not self.queued.wait(HEARTBEAT):
                continue
            self.queued.clear()
            try:
                while not self.stopping.is_set() and self._run_next():
                    pass
            except psycopg2.Error as exc:  # the queue waits for the database to answer again
                log.warning("tap executor: %s", str(exc).strip())
                self.stopping.wait(HEARTBEAT)
            except Exception:  # the thread must go on; a job it held ends in ERROR once silent
                log.exception("tap executor")
                self.stopping.wait(HEARTBEAT)

    def _run_next(self) -> bool:
        """Claim a queued job and run it to its end; False when none waits."""
        connection = self._connect()
        try:
            with self.lock:
                job = None if self.stopping.is_set() else self.store.claim(connection, self.identity)
                if job is None:
                    return False
                self.running[job.id] = connection
            try:
                outcome = self._outcome(connection, job)
            finally:
                with self.lock:
                    del self.running[job.id]
            self._finish(connection, job, outcome)
            return True
        finally:
            connection.close()

    def _outcome(self, connection, job: Job) -> Outcome:
        name = f"{job.id}-{self.identity.token}"
        part = self.store.results / f"{name}.part"
        try:
            # Read again now: a user disabled since the job was created must not run it with old rights.
            principals = principals_of(connection, job.owner)
            connection.commit()
            # Only this user reads results; the front end too when it sends them (X-Sendfile).
            with os.fdopen(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
                media_type = self.work(connection, principals, job, out)
                if self.shared:
                    os.fchmod(out.fileno(), 0o640)
                size = out.tell()
            os.replace(part, self.store.results / name)
            return Outcome("COMPLETED", result=(name, size, media_type))
        except QueryError as exc:
            return Outcome("ERROR", str(exc))
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:  # or cancelled: aborted, say
            log.warning("tap job %s: %s", job.id, str(exc).strip())
            return Outcome("ERROR", "The database connection was lost while the query ran; submit it again.")
        except OSError as exc:
            log.error("tap job %s: cannot write its result: %s", job.id, exc)
            return Outcome("ERROR", f"The result could not be stored ({exc.strerror}); submit the query again.")
        except Exception:
            log.exception("tap job %s", job.id)
            return Outcome("ERROR", INTERNAL)
        finally:
            part.unlink(missing_ok=True)

    def _finish(self, connection, job: Job, outcome: Outcome) -> None:
        try:
            recorded = self.store.finish(connection, job.id, self.identity, outcome)
        except psycopg2.Error:  # this connection is lost; another may still record it
            fresh = self._connect()
            try:
                recorded = self.store.finish(fresh, job.id, self.identity, outcome)
            finally:
                fresh.close()
        if not recorded and outcome.result:  # aborted, deleted or destroyed meanwhile
            (self.store.results / outcome.result[0]).unlink(missing_ok=True)

    # -- the monitor ------------------------------------------------------------------------

    def _monitor(self) -> None:
        while not self.stopping.is_set():
            try:
                connection = self._connect()
            except psycopg2.Error as exc:
                log.warning("tap monitor: cannot connect: %s", str(exc).strip())
                self.stopping.wait(HEARTBEAT)
                continue
            try:
                self._listen(connection)
            except psycopg2.Error as exc:
                log.warning("tap monitor: connection lost: %s", str(exc).strip())
                self.stopping.wait(HEARTBEAT)
            finally:
                connection.close()

    def _listen(self, connection) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {CHANNEL}")
        connection.commit()
        next_tick = time.monotonic()
        while not self.stopping.is_set():
            if time.monotonic() >= next_tick:
                self._tick(connection)
                next_tick = time.monotonic() + HEARTBEAT
            ready, _, _ = select.select([connection], [], [], max(0.0, next_tick - time.monotonic()))
            if ready:
                connection.poll()
                for notice in connection.notifies:
                    job_id, _, phase = notice.payload.partition(" ")
                    self.changes.changed(job_id)
                    if phase == "QUEUED":
                        self.queued.set()
                connection.notifies.clear()

    def _tick(self, connection) -> None:
        """Heartbeat, the sweep, and a wake-up for executors when jobs wait in the queue."""
        with self.lock:
            running = dict(self.running)
        if running:
            ours = self.store.beat(connection, self.identity, list(running))
            for job_id in running.keys() - ours:  # ended by someone else while its query runs on
                _cancel(running[job_id])
        if self.store.sweep(connection):
            self.queued.set()


def _cancel(connection) -> None:
    try:
        connection.cancel()
    except psycopg2.Error:
        pass  # closed meanwhile: nothing runs on it any more
