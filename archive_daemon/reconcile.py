"""Reconcile scans in the background: the daemon's safety net.

Any event the watches missed (the daemon was down, NFS without inotify, a database
outage, a watch that died) is found again by comparing a whole root with the database:
one streaming merge of an os.scandir walk with an ordered read of the rows.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import psycopg2

from . import db, leader
from .deletions import guard
from .loader import Summary, compare


@dataclass
class Reconciled:
    """What one background reconcile pass saw, for STATUS and the log."""

    root: str
    prefix: str
    files: int
    seconds: float
    withheld: list[str]
    unreadable: list[tuple[str, str]]


class Reconciler:
    """Reconcile scans in a thread of their own, so the service loop goes on meanwhile.

    It only reads the database. What it finds goes to the service loop through `out`, a
    bounded queue (a large backlog waits for the loop rather than filling memory):
    ("found", root, DiskEntry), ("deleted", root, path), ("rules", root, directory) for a
    directory whose rule source changed, ("reconciled", root, Reconciled),
    and ("reconcile-error", root, message) when the database fails it (it retries).
    """

    def __init__(self, url: str, config, out: queue.Queue):
        self.url, self.config, self.out = url, config, out
        self._requests: queue.Queue = queue.Queue()
        self._asked: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reconcile", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def request(self, root: str, prefix: str = "") -> None:
        """Compare root/prefix with the database soon (once, however often asked before it runs)."""
        with self._lock:
            if (root, prefix) in self._asked:
                return
            self._asked.add((root, prefix))
        self._requests.put((root, prefix))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self.out.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _run(self) -> None:
        connection = None
        while not self._stop.is_set():
            try:
                name, prefix = self._requests.get(timeout=0.5)
            except queue.Empty:
                continue
            delay = 1.0
            while not self._stop.is_set():
                try:
                    if connection is None:
                        connection = leader.connect(self.url, "archive-daemon reconcile")
                    self._reconcile(connection, name, prefix)
                    break
                except psycopg2.Error as exc:
                    if connection is not None:
                        connection.close()
                    connection = None
                    try:
                        self._put(("reconcile-error", name, db.first_line(exc)))
                    except _Stopped:
                        return
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)
                except _Stopped:
                    return
            with self._lock:
                self._asked.discard((name, prefix))
        if connection is not None:
            connection.close()

    def _reconcile(self, connection, name: str, prefix: str) -> None:
        roots = {r.name: r for r in self.config.roots}
        if name not in roots:
            return
        root, started, summary, found = roots[name], time.monotonic(), Summary(), 0
        for _, entry in compare(connection, root, [prefix], summary,
                                rule_file_max_bytes=self.config.access.rule_file_max_bytes):
            self._put(("found", name, entry))
            found += 1
        for directory in summary.rules_changed:
            self._put(("rules", name, directory))
        deletions = guard(root, summary.gone, summary.known, summary.problems,
                          self.config.daemon.max_delete_fraction)
        for path in deletions.drop:
            self._put(("deleted", name, path))
        files = summary.unchanged + len(summary.failed_unchanged) + found
        self._put(("reconciled", name, Reconciled(name, prefix, files, time.monotonic() - started,
                                                  deletions.withheld, summary.problems.unreadable)))


class _Stopped(Exception):
    pass
