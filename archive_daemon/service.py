"""`archive-daemon run`: keep the database equal to the roots, as a systemd service.

One loop in the main thread does all the writing: it takes what the watches and the
background reconcile report, lets files settle, reads their headers through the worker
pool and writes them in batches through the one connection that holds the leader lock.
It pings the systemd watchdog only while it goes round and every watch is alive, so a
stuck loader or a dead watch gets the service restarted; a database outage does not stop
the pings (a restart would not help): the loop keeps watching, keeps what it saw, retries
with backoff and says so in STATUS.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import time
from dataclasses import dataclass, field

import psycopg2

from . import db, schedule
from .config import Config, ConfigError, RootConfig, load_config
from .deletions import ALWAYS_DROPPABLE
from .leader import Leader
from .loader import Batch, HeaderReaders
from .mounts import watch_mode
from .overrides import is_override
from .recompute import recompute
from .reconcile import Reconciled, Reconciler
from .sdnotify import Notifier, setup_logging
from .store import delete_files
from .settle import Key, Settler
from .watcher import DiskEntry, make_watch

log = logging.getLogger("archive_daemon.service")

TICK = 0.25            # seconds the loop waits when there is nothing to do
STANDBY_RETRY = 1.0    # how often a standby tries to take the lock
VERSION_CHECK = 5.0    # how often the leader looks for schedule or user changes
HEARTBEAT = 10.0       # how often a daemon records that it is alive (the API's health check reads it)
MAX_BACKOFF = 30.0
WATCH_RETRY = 2.0      # how often a watch that could not start is tried again


@dataclass
class Counters:
    loaded: int = 0
    failed: int = 0
    removed: int = 0
    last_reconcile: str = "not yet"
    warnings: dict[str, str] = field(default_factory=dict)  # by topic, shown in STATUS


class Service:
    def __init__(self, config: Config, config_arg: str | None, url: str, notifier: Notifier | None = None):
        self.config, self.config_arg, self.url = config, config_arg, url
        self.notifier = notifier or Notifier()
        self.events: queue.Queue = queue.Queue()              # from the watches: never blocks them
        self.found: queue.Queue = queue.Queue(maxsize=20000)  # from the reconciler: backpressure
        self.settler = Settler(self._roots())
        self.leader = Leader(url)
        self.readers: HeaderReaders | None = None
        self.reconciler: Reconciler | None = None
        self.watches: dict[str, object] = {}
        self.watch_retry: dict[str, float] = {}
        self.broken_watches: set[str] = set()
        self.todo: dict[Key, DiskEntry] = {}
        self.gone: set[Key] = set()
        self.active = False          # this daemon is the leader (its watches run)
        self.database = "connecting"
        self.next_attempt = 0.0
        self.backoff = 1.0
        self.next_reconcile = float("inf")
        self.counters = Counters()
        self.access_version: int | None = None
        self.rules = None
        self.next_version_check = 0.0
        self.next_heartbeat = 0.0
        self.recompute_dirs: set[tuple[str, str]] = set()
        self.stop_requested = False
        self.reload_requested = False

    def _roots(self) -> dict[str, RootConfig]:
        return {r.name: r for r in self.config.roots}

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        log.info("archive-daemon starting: %d roots, database %s", len(self.config.roots), _safe(self.url))
        try:
            while not self.stop_requested:
                if self.reload_requested:
                    self._reload()
                if not self.leader.leading and time.monotonic() >= self.next_attempt:
                    self._try_to_lead()
                busy = self._step() if self.active else False
                if self._watches_ok():
                    self.notifier.watchdog()
                self.notifier.status(self._status())
                self._heartbeat()
                if not busy and not self.stop_requested:
                    self._wait()
        finally:
            self._shutdown()
        return 0

    def _heartbeat(self) -> None:
        if self.leader.connection is None or time.monotonic() < self.next_heartbeat:
            return
        self.next_heartbeat = time.monotonic() + HEARTBEAT
        try:
            with self.leader.connection.cursor() as cursor:
                cursor.execute("""
                    INSERT INTO daemon_heartbeat (name, role, status) VALUES (%s, %s, %s)
                    ON CONFLICT (name) DO UPDATE SET role = excluded.role, status = excluded.status, beat_at = now()
                """, (self.leader.name, "leader" if self.leader.leading else "standby", self._status()))
            self.leader.connection.commit()
        except psycopg2.Error as exc:
            self._lost_database(exc)

    def _wait(self) -> None:
        try:
            self._handle(self.events.get(timeout=TICK))
        except queue.Empty:
            pass

    def _step(self) -> bool:
        """One round of the active loop; True when it did work (so no pause before the next)."""
        self._drain()
        if self.reconciler is not None and time.monotonic() >= self.next_reconcile:
            self._reconcile_all()
        ready, gone = self.settler.due()
        for root, entry in ready:
            self.gone.discard((root, entry.path))
            self.todo[(root, entry.path)] = entry
        for key in gone:
            self.todo.pop(key, None)
            self.gone.add(key)
        if not self.leader.leading:
            return False
        try:
            self._follow_access_changes()
            if not (self.todo or self.gone):
                return False
            if self.gone:
                self._drop()
            if self.todo:
                self._load()
        except psycopg2.Error as exc:
            self._lost_database(exc)
            return False
        return bool(self.todo)

    def _drain(self) -> None:
        # Watch events are always taken (the watches must never wait); a reconcile's finds
        # only while few files wait, so a large backlog stays on disk, not in memory.
        room = max(0, 4 * self.config.ingest.batch_size - len(self.todo))
        for source, limit in ((self.events, 100000), (self.found, room)):
            for _ in range(limit):
                try:
                    item = source.get_nowait()
                except queue.Empty:
                    break
                self._handle(item)

    def _handle(self, item) -> None:
        kind, root, detail = item
        if not self.active or root not in self.settler.roots:
            return
        if kind in ("touched", "closed", "deleted") and is_override(os.path.basename(detail)):
            self.recompute_dirs.add((root, os.path.dirname(detail)))
            return
        if kind == "touched":
            self.settler.touched(root, detail)
        elif kind == "closed":
            self.settler.closed(root, detail)
        elif kind == "deleted":
            self.settler.deleted(root, detail)
        elif kind == "found":
            self.settler.found(root, detail)
        elif kind == "rescan":
            self.reconciler.request(root, detail)
        elif kind == "reconciled":
            self._reconciled(detail)
        elif kind == "reconcile-error":
            self.counters.warnings["reconcile"] = f"reconcile of {root} waits for the database: {detail}"

    def _reconciled(self, result: Reconciled) -> None:
        self.counters.warnings.pop("reconcile", None)
        where = f"{result.root}/{result.prefix}" if result.prefix else result.root
        if not result.prefix:
            self.counters.last_reconcile = (f"{time.strftime('%H:%M')} ({result.files} files in "
                                            f"{result.seconds:.0f} s)")
        log.info("reconciled %s: %d files in %.1f s", where, result.files, result.seconds,
                 extra={"ROOT": result.root})
        for path, why in result.unreadable:
            log.warning("%s: %s unreadable: %s", result.root, path or ".", why,
                        extra={"ROOT": result.root, "FILE_PATH": path, "REASON": why})
        topic = f"withheld:{result.root}"
        if result.withheld:
            self.counters.warnings[topic] = "; ".join(result.withheld)
            for message in result.withheld:
                log.warning("%s", message, extra={"ROOT": result.root, "REASON": "mass delete withheld"})
        elif not result.prefix:
            self.counters.warnings.pop(topic, None)

    def _load(self) -> None:
        """Read and write one batch of the files waiting (one root at a time)."""
        root_name = next(iter(self.todo))[0]
        root = self.settler.roots[root_name]
        keys = [k for k in self.todo if k[0] == root_name][: self.config.ingest.batch_size]
        entries = [("changed", self.todo[k]) for k in keys]
        batch, now = Batch(root_name), time.time()
        for kind, entry, line, reason in self.readers.load(root, entries):
            if line is None and abs(now - entry.mtime_us / 1e6) < root.settle_seconds:
                # Bad now, but written moments ago: more may be on its way. Never recorded
                # as a failure while it grows; it is read again once it has settled.
                self.settler.touched(root_name, entry.path)
                continue
            batch.add(kind, entry, line, reason)
        written = batch.write(self.leader.connection)
        for key in keys:
            self.todo.pop(key, None)
        self.counters.loaded += written.new + written.updated
        self.counters.failed += len(written.failed)
        for path, reason in written.failed:
            log.warning("%s/%s not archived: %s", root_name, path, reason,
                        extra={"ROOT": root_name, "FILE_PATH": path, "REASON": reason})

    def _follow_access_changes(self) -> None:
        """New rules for loading once the schedule or the principals change; decisions made
        again for directories whose override file changed."""
        if time.monotonic() >= self.next_version_check:
            self.next_version_check = time.monotonic() + VERSION_CHECK
            version = schedule.version(self.leader.connection)
            if version != self.access_version:
                self._new_rules(version)
        while self.recompute_dirs:
            root, directory = self.recompute_dirs.pop()
            seen, changed = recompute(self.leader.connection, self.config, self.rules, root=root,
                                      prefix=directory, on_progress=self.notifier.watchdog)
            log.info("override file changed in %s/%s: access decided again for %d files, %d changed",
                     root, directory, seen, changed, extra={"ROOT": root, "FILE_PATH": directory})

    def _new_rules(self, version: int) -> None:
        """Rules with the schedule as it is at `version`, and header readers that use them."""
        self.access_version = version
        self.rules = schedule.current_rules(self.leader.connection, self.config)
        if self.readers is not None:
            self.readers.close()
        self.readers = HeaderReaders(self.config, self.config.ingest.worker_count, self.rules, "spawn")

    def _drop(self) -> None:
        by_root: dict[str, list[str]] = {}
        for root, path in self.gone:
            by_root.setdefault(root, []).append(path)
        for root, paths in by_root.items():
            delete_files(self.leader.connection, root, paths)
            self.counters.removed += len(paths)
            if len(paths) <= ALWAYS_DROPPABLE:
                for path in paths:
                    log.info("%s/%s removed from the archive: no longer on disk", root, path,
                             extra={"ROOT": root, "FILE_PATH": path})
            else:
                log.info("%s: %d files removed from the archive: no longer on disk", root, len(paths),
                         extra={"ROOT": root})
        self.gone.clear()

    # --- the database and the leader lock -------------------------------------------------

    def _try_to_lead(self) -> None:
        try:
            if self.leader.connection is None:
                self.leader.connect()
                db.check_schema_at(self.url)
            if self.leader.lead():
                self._became_leader()
            else:
                holder = self.leader.holder()
                if self.database != "standby":
                    log.info("standing by: the archive is written by %s", holder)
                self._stand_down(f"standby (the archive is written by {holder})")
                self.next_attempt = time.monotonic() + STANDBY_RETRY
            self.backoff = 1.0
            self.notifier.ready(self._status())
        except (psycopg2.Error, db.DatabaseError) as exc:
            message = db.first_line(exc) if isinstance(exc, psycopg2.Error) else str(exc)
            if self.database != f"unreachable: {message}":
                log.error("database unavailable: %s; retrying with backoff", message)
            self.database = f"unreachable: {message}"
            self.leader.close()
            self.next_attempt = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    def _became_leader(self) -> None:
        if self.database.startswith("unreachable"):
            log.info("database reachable again; %d files waiting are being loaded", len(self.todo) + len(self.settler))
        self.database = "ok"
        if self.active:
            return
        log.info("leading: watching %d roots", len(self.config.roots))
        self._new_rules(schedule.version(self.leader.connection))
        self.active = True
        self._start_watching()
        self._reconcile_all()

    def _stand_down(self, state: str) -> None:
        """Another daemon leads: stop watching and forget what this one had not written."""
        self.database = state
        if not self.active:
            return
        log.warning("another daemon took over the archive; standing by")
        self.active = False
        self._stop_watching()
        self.todo.clear()
        self.gone.clear()
        self.settler = Settler(self._roots())

    def _lost_database(self, exc: Exception) -> None:
        message = db.first_line(exc)
        log.error("database lost: %s; %d files keep waiting, retrying with backoff", message,
                  len(self.todo) + len(self.gone))
        self.database = f"unreachable: {message}"
        self.leader.close()
        self.next_attempt = time.monotonic() + self.backoff

    def _reconcile_all(self) -> None:
        for root in self.config.roots:
            self.reconciler.request(root.name)
        self.next_reconcile = time.monotonic() + self.config.daemon.reconcile_interval

    # --- watches --------------------------------------------------------------------------

    def _start_watch(self, root: RootConfig) -> None:
        mode = watch_mode(root.mode, str(root.path))
        watch = make_watch(root, mode, self.events)
        try:
            watch.start()
        except OSError as exc:
            self.counters.warnings[f"watch:{root.name}"] = f"root {root.name} not watched: {exc.strerror}"
            log.error("cannot watch root %s (%s): %s; trying again", root.name, root.path, exc.strerror,
                      extra={"ROOT": root.name, "REASON": exc.strerror})
            self.watch_retry[root.name] = time.monotonic() + WATCH_RETRY
            self.watches.pop(root.name, None)
            return
        self.counters.warnings.pop(f"watch:{root.name}", None)
        self.watches[root.name] = watch
        log.info("watching root %s (%s) by %s", root.name, root.path, mode, extra={"ROOT": root.name})

    def _watches_ok(self) -> bool:
        """Restart watches that died; False while one cannot be restarted although its root is there.

        A root that is missing (an unmounted mount point) is waited for, with pings: a restart
        of the daemon would not bring it back.
        """
        if not self.active:
            return True
        for root in self.config.roots:
            watch = self.watches.get(root.name)
            if watch is not None and watch.alive():
                continue
            if watch is not None:
                log.error("the watch of root %s stopped; restarting it", root.name, extra={"ROOT": root.name})
                watch.stop()
                self.watches.pop(root.name)
                self.watch_retry[root.name] = 0.0
            if time.monotonic() < self.watch_retry.get(root.name, 0.0):
                continue
            self._start_watch(root)
            if root.name in self.watches:
                self.broken_watches.discard(root.name)
                self.reconciler.request(root.name)  # what it missed while it was down
            elif os.path.isdir(root.path):
                self.broken_watches.add(root.name)
            else:
                self.broken_watches.discard(root.name)
        return not self.broken_watches and (self.reconciler is None or self.reconciler.alive())

    def _start_watching(self) -> None:
        """The background reconciler and a watch for every configured root."""
        self.reconciler = Reconciler(self.url, self.config, self.found)
        self.reconciler.start()
        for root in self.config.roots:
            self._start_watch(root)

    def _stop_watching(self) -> None:
        for watch in self.watches.values():
            watch.stop()
        self.watches.clear()
        self.broken_watches.clear()
        if self.reconciler is not None:
            self.reconciler.stop()
            self.reconciler = None

    # --- signals, status, shutdown --------------------------------------------------------

    def _reload(self) -> None:
        self.reload_requested = False
        try:
            config = load_config(self.config_arg)
        except ConfigError as exc:
            self.counters.warnings["config"] = f"configuration not reloaded: {exc}"
            log.error("configuration not reloaded, the previous one stays in force: %s", exc)
            return
        self.counters.warnings.pop("config", None)
        old, old_access = self._roots(), self.config.access
        self.config = config
        self.access_version = None  # new rules at the next look, should the database be away now
        self.settler.roots = self._roots()
        for name in old.keys() - self.settler.roots.keys():
            self.settler.forget_root(name)
            self.todo = {k: v for k, v in self.todo.items() if k[0] != name}
            self.gone = {k for k in self.gone if k[0] != name}
        if self.active and self.leader.leading:
            try:
                self._new_rules(schedule.version(self.leader.connection))
                if config.access != old_access:
                    seen, changed = recompute(self.leader.connection, config, self.rules,
                                              on_progress=self.notifier.watchdog)
                    log.info("access rules changed: decided again for %d files, %d changed", seen, changed)
            except psycopg2.Error as exc:
                self._lost_database(exc)
        if self.active:
            self._stop_watching()
            self._start_watching()
            for root in config.roots:
                if old.get(root.name) != root:
                    self.reconciler.request(root.name)
        log.info("configuration reloaded from %s", config.source)

    def _status(self) -> str:
        if not self.active:
            return f"database {self.database}"
        waiting = len(self.todo) + len(self.settler) + len(self.gone)
        text = (f"{waiting} queued, {self.counters.loaded} loaded, {self.counters.failed} failed, "
                f"{self.counters.removed} removed; last reconcile {self.counters.last_reconcile}; "
                f"database {self.database}")
        if self.counters.warnings:
            text += "; " + "; ".join(self.counters.warnings.values())
        return text

    def _shutdown(self) -> None:
        self.notifier.stopping("stopping")
        log.info("stopping")
        self._stop_watching()
        if self.readers is not None:
            self.readers.close()
        self.leader.close()


def _safe(url: str) -> str:
    """The URL without its password, for the log."""
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}://{credentials.split(':')[0]}@{host}" if at else url


def run(config: Config, config_arg: str | None, url: str) -> int:
    """Serve until SIGTERM (or SIGINT); SIGHUP reloads the configuration."""
    setup_logging()
    service = Service(config, config_arg, url)

    def stop(signum, frame):
        service.stop_requested = True

    def reload(signum, frame):
        service.reload_requested = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    return service.run()
