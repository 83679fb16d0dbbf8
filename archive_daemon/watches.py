"""What the disk says, kept coming: a watch for every root and the background reconciler,
restarted when they die.

Both report on queues the service loop reads: `events` from the watches (unbounded, so a
watch never waits) and `found` from the reconciler (bounded: a large backlog waits on disk,
not in memory).
"""

from __future__ import annotations

import logging
import os
import queue
import time

from .config import Config, RootConfig
from .mounts import watch_mode
from .reconcile import Reconciled, Reconciler
from .watcher import make_watch

log = logging.getLogger("archive_daemon.watches")

WATCH_RETRY = 2.0      # how often a watch that could not start is tried again
BROKEN_AFTER = 10.0    # how long a watch may fail to restart, its root there, before the pings stop


class Watches:
    """The watches and the reconciler of the leading daemon; `warnings` is shared with STATUS."""

    def __init__(self, url: str, warnings: dict[str, str], clock=time.monotonic):
        self.url, self.warnings, self.clock = url, warnings, clock
        self.events: queue.Queue = queue.Queue()
        self.found: queue.Queue = queue.Queue(maxsize=20000)
        self.config: Config | None = None
        self.reconciler: Reconciler | None = None
        self.watches: dict[str, object] = {}
        self.retry: dict[str, float] = {}
        self.broken: set[str] = set()
        self.failing_since: dict[str, float] = {}
        self.next_reconcile = float("inf")
        self.last_reconcile = "not yet"

    def start(self, config: Config) -> None:
        """The background reconciler and a watch for every configured root."""
        self.config = config
        self.reconciler = Reconciler(self.url, config, self.found)
        self.reconciler.start()
        for root in config.roots:
            self._start_watch(root)

    def stop(self) -> None:
        for watch in self.watches.values():
            watch.stop()
        self.watches.clear()
        self.broken.clear()
        if self.reconciler is not None:
            self.reconciler.stop()
            self.reconciler = None

    def restart(self, config: Config) -> None:
        """A reloaded configuration: new watches, and a reconcile of every root that changed."""
        old = {r.name: r for r in self.config.roots}
        self.stop()
        self.start(config)
        for root in config.roots:
            if old.get(root.name) != root:
                self.reconciler.request(root.name)

    def reconcile_all(self) -> None:
        for root in self.config.roots:
            self.reconciler.request(root.name)
        self.next_reconcile = self.clock() + self.config.daemon.reconcile_interval

    def reconcile_when_due(self) -> None:
        if self.reconciler is not None and self.clock() >= self.next_reconcile:
            self.reconcile_all()

    def reconcile(self, root: str, prefix: str = "") -> None:
        self.reconciler.request(root, prefix)

    def ok(self) -> bool:
        """Restart watches that died; False once one has not restarted for BROKEN_AFTER seconds
        although its root is there.

        A root that is missing (an unmounted mount point) is waited for, with pings: a restart
        of the daemon would not bring it back. Nor would it help a root that is coming back
        (a tree being recreated can fail one attempt), hence the grace.
        """
        for root in self.config.roots:
            watch = self.watches.get(root.name)
            if watch is not None and watch.alive():
                continue
            if watch is not None:
                log.error("the watch of root %s stopped; restarting it", root.name, extra={"ROOT": root.name})
                watch.stop()
                self.watches.pop(root.name)
                self.retry[root.name] = 0.0
            if self.clock() < self.retry.get(root.name, 0.0):
                continue
            self._start_watch(root)
            if root.name in self.watches:
                self.broken.discard(root.name)
                self.failing_since.pop(root.name, None)
                self.reconciler.request(root.name)  # what it missed while it was down
            elif os.path.isdir(root.path):
                since = self.failing_since.setdefault(root.name, self.clock())
                if self.clock() - since >= BROKEN_AFTER:
                    self.broken.add(root.name)
            else:
                self.broken.discard(root.name)
                self.failing_since.pop(root.name, None)
        return not self.broken and (self.reconciler is None or self.reconciler.alive())

    def _start_watch(self, root: RootConfig) -> None:
        mode = watch_mode(root.mode, str(root.path))
        watch = make_watch(root, mode, self.events)
        try:
            try:
                watch.start()
            except RecursionError:  # watchdog walks the tree recursively: one nested too deep
                _stop_quietly(watch)
                mode = "polling"
                self.warnings[f"polled:{root.name}"] = (f"root {root.name} polled: a directory there is nested "
                                                        "too deep for inotify")
                log.warning("root %s has a directory nested too deep for inotify: polled instead", root.name,
                            extra={"ROOT": root.name, "REASON": "directory nested too deep"})
                watch = make_watch(root, mode, self.events)
                watch.start()
        except OSError as exc:
            self.warnings[f"watch:{root.name}"] = f"root {root.name} not watched: {exc.strerror}"
            log.error("cannot watch root %s (%s): %s; trying again", root.name, root.path, exc.strerror,
                      extra={"ROOT": root.name, "REASON": exc.strerror})
            self.retry[root.name] = self.clock() + WATCH_RETRY
            self.watches.pop(root.name, None)
            return
        self.warnings.pop(f"watch:{root.name}", None)
        self.watches[root.name] = watch
        log.info("watching root %s (%s) by %s", root.name, root.path, mode, extra={"ROOT": root.name})

    def reconciled(self, result: Reconciled) -> None:
        """A reconcile pass is done: the log, and STATUS's last reconcile and warnings."""
        self.warnings.pop("reconcile", None)
        where = f"{result.root}/{result.prefix}" if result.prefix else result.root
        if not result.prefix:
            self.last_reconcile = (f"{time.strftime('%H:%M')} ({result.files} files in "
                                   f"{result.seconds:.0f} s)")
        log.info("reconciled %s: %d files in %.1f s", where, result.files, result.seconds,
                 extra={"ROOT": result.root})
        for path, why in result.unreadable:
            log.warning("%s: %s unreadable: %s", result.root, path or ".", why,
                        extra={"ROOT": result.root, "FILE_PATH": path, "REASON": why})
        topic = f"withheld:{result.root}"
        if result.withheld:
            self.warnings[topic] = "; ".join(result.withheld)
            for message in result.withheld:
                log.warning("%s", message, extra={"ROOT": result.root, "REASON": "mass delete withheld"})
        elif not result.prefix:
            self.warnings.pop(topic, None)

    def reconcile_failed(self, root: str, message: str) -> None:
        self.warnings["reconcile"] = f"reconcile of {root} waits for the database: {message}"


def _stop_quietly(watch) -> None:
    try:
        watch.stop()
    except Exception:  # it never fully started
        pass
