"""`archive-daemon run`: keep the database equal to the roots, as a systemd service.

One loop in the main thread does all the writing. Each round it takes what the watches and
the background reconcile report (watches.py), lets files settle and has them read and
written in batches (feeder.py) through the one connection that holds the leader lock
(link.py), with access decisions kept current (access_follow.py). It pings the systemd
watchdog only while it goes round and every watch is alive, so a stuck loader or a dead
watch gets the service restarted; a database outage does not stop the pings (a restart
would not help): the loop keeps watching, keeps what it saw, retries with backoff and says
so in STATUS.
"""

from __future__ import annotations

import logging
import os
import queue
import signal

import psycopg2

from . import db, ivoaterms
from .access_follow import AccessFollower
from .config import Config, ConfigError, load_config
from .feeder import Feeder
from .link import Link
from .overrides import is_override
from .sdnotify import Notifier, setup_logging
from .watches import Watches

log = logging.getLogger("archive_daemon.service")

TICK = 0.25            # seconds the loop waits when there is nothing to do


class Service:
    """The loop that ties the parts together; signals only set the flags it looks at."""

    def __init__(self, config: Config, config_arg: str | None, url: str, notifier: Notifier | None = None):
        self.config, self.config_arg, self.url = config, config_arg, url
        self.notifier = notifier or Notifier()
        self.warnings: dict[str, str] = {}  # by topic, shown in STATUS
        self.link = Link(url)
        self.watches = Watches(url, self.warnings)
        self.feeder = Feeder(config)
        self.access = AccessFollower(config, self.warnings, self.notifier.watchdog, url)
        self.active = False          # this daemon is the leader (its watches run)
        self.stop_requested = False
        self.reload_requested = False

    # --- the loop: event -> settle -> read -> write ----------------------------------------

    def run(self) -> int:
        log.info("archive-daemon starting: %d roots, database %s", len(self.config.roots), _safe(self.url))
        try:
            while not self.stop_requested:
                if self.reload_requested:
                    self._reload()
                if self.link.due():
                    self._lead_or_stand_by()
                busy = self._step() if self.active else False
                if not self.active or self.watches.ok():
                    self.notifier.watchdog()
                self.notifier.status(self._status())
                self._heartbeat()
                if not busy and not self.stop_requested:
                    self._wait()
        finally:
            self._shutdown()
        return 0

    def _step(self) -> bool:
        """One round of the leading loop; True when it did work (so no pause before the next)."""
        self._drain()
        self.watches.reconcile_when_due()
        self.feeder.settle()
        if not self.link.leading:
            return False
        connection = self.link.connection
        try:
            rules = self.access.changed_rules(connection)
            if rules is not None:
                self.feeder.use_rules(rules)
            self.access.decide_overridden(connection)
            return self.feeder.write(connection)
        except psycopg2.Error as exc:
            self._lost_database(exc)
            return False

    def _drain(self) -> None:
        # Watch events are always taken (the watches must never wait); a reconcile's finds
        # only while few files wait, so a large backlog stays on disk, not in memory.
        for source, limit in ((self.watches.events, 100000), (self.watches.found, self.feeder.room())):
            for _ in range(limit):
                try:
                    item = source.get_nowait()
                except queue.Empty:
                    break
                self._handle(item)

    def _wait(self) -> None:
        try:
            self._handle(self.watches.events.get(timeout=TICK))
        except queue.Empty:
            pass

    def _handle(self, item) -> None:
        kind, root, detail = item
        if not self.active or not self.feeder.knows(root):
            return
        if kind in ("touched", "closed", "deleted") and is_override(os.path.basename(detail)):
            self.access.override_changed(root, os.path.dirname(detail))
        elif kind in ("touched", "closed", "deleted", "found"):
            self.feeder.report(kind, root, detail)
        elif kind == "rescan":
            self.watches.reconcile(root, detail)
        elif kind == "rules":  # a reconcile found a directory whose rule sources changed
            self.access.override_changed(root, detail)
        elif kind == "reconciled":
            self.watches.reconciled(detail)
        elif kind == "reconcile-error":
            self.watches.reconcile_failed(root, detail)

    # --- leading or standing by -----------------------------------------------------------

    def _lead_or_stand_by(self) -> None:
        try:
            if self.link.take_lock():
                self._lead()
            else:
                self.link.stands_by()
                self._stand_down()
            self.link.reached()
            self.notifier.ready(self._status())
        except (psycopg2.Error, db.DatabaseError) as exc:
            self.link.unreachable(exc)

    def _lead(self) -> None:
        self.link.leads(waiting=len(self.feeder))
        if self.active:
            return
        log.info("leading: watching %d roots", len(self.config.roots))
        self.feeder.use_rules(self.access.rules_now(self.link.connection))
        self.access.decide_all(self.link.connection)  # settings changed while no daemon led
        ivoaterms.write(self.link.connection, self.config.ivoa)
        self.active = True
        self.watches.start(self.config)
        self.watches.reconcile_all()

    def _stand_down(self) -> None:
        """Another daemon leads: stop watching and forget what this one had not written."""
        if not self.active:
            return
        log.warning("another daemon took over the archive; standing by")
        self.active = False
        self.watches.stop()
        self.feeder.forget()

    def _lost_database(self, exc: Exception) -> None:
        self.link.lost(exc, waiting=len(self.feeder))

    def _heartbeat(self) -> None:
        try:
            self.link.heartbeat(self._status())
        except psycopg2.Error as exc:
            self._lost_database(exc)

    # --- signals, status, shutdown --------------------------------------------------------

    def _reload(self) -> None:
        self.reload_requested = False
        try:
            config = load_config(self.config_arg)
        except ConfigError as exc:
            self.warnings["config"] = f"configuration not reloaded: {exc}"
            log.error("configuration not reloaded, the previous one stays in force: %s", exc)
            return
        self.warnings.pop("config", None)
        self.config = config
        self.access.reconfigure(config)
        self.feeder.reconfigure(config)
        if self.active and self.link.leading:
            try:
                self.feeder.use_rules(self.access.rules_now(self.link.connection))
                self.access.decide_all(self.link.connection)
                ivoaterms.write(self.link.connection, config.ivoa)
            except psycopg2.Error as exc:
                self._lost_database(exc)
        if self.active:
            self.watches.restart(config)
        log.info("configuration reloaded from %s", config.source)

    def _status(self) -> str:
        if not self.active:
            return f"database {self.link.state}"
        text = (f"{len(self.feeder)} queued, {self.feeder.loaded} loaded, {self.feeder.failed} failed, "
                f"{self.feeder.removed} removed; last reconcile {self.watches.last_reconcile}; "
                f"database {self.link.state}")
        if self.warnings:
            text += "; " + "; ".join(self.warnings.values())
        return text

    def _shutdown(self) -> None:
        self.notifier.stopping("stopping")
        log.info("stopping")
        self.watches.stop()
        self.feeder.close()
        self.link.close()


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
