"""Files on their way from an event to a row: they settle, then are read and written in
batches, or dropped once they are gone from the disk.

Nothing here forgets a file on a database error: a batch is one transaction, and what it
held stays waiting until the write succeeds.
"""

from __future__ import annotations

import logging
import time

from .access import Rules
from .config import Config
from .deletions import ALWAYS_DROPPABLE
from .loader import Batch
from .readers import HeaderReaders
from .settle import Key, Settler
from .store import delete_files
from .watcher import DiskEntry

log = logging.getLogger("archive_daemon.feeder")


class Feeder:
    """What the watches and reconciles reported, from settling to written; counts for STATUS."""

    def __init__(self, config: Config):
        self.config = config
        self.settler = Settler(self._roots())
        self.todo: dict[Key, DiskEntry] = {}
        self.gone: set[Key] = set()
        self.readers: HeaderReaders | None = None
        self.loaded = self.failed = self.removed = 0

    def _roots(self) -> dict:
        return {r.name: r for r in self.config.roots}

    def __len__(self) -> int:
        """Files waiting: settling, to be loaded, to be dropped."""
        return len(self.todo) + len(self.settler) + len(self.gone)

    def knows(self, root: str) -> bool:
        return root in self.settler.roots

    def room(self) -> int:
        """How many more a reconcile may hand over now (few while many wait, so a backlog stays on disk)."""
        return max(0, 4 * self.config.ingest.batch_size - len(self.todo))

    def report(self, kind: str, root: str, detail) -> None:
        """A watch or a reconcile saw a file `touched`, `closed`, `deleted` or `found`."""
        if kind == "touched":
            self.settler.touched(root, detail)
        elif kind == "closed":
            self.settler.closed(root, detail)
        elif kind == "deleted":
            self.settler.deleted(root, detail)
        elif kind == "found":
            self.settler.found(root, detail)

    def settle(self) -> None:
        """Move the files that have settled (or gone) to those waiting for the database."""
        ready, gone = self.settler.due()
        for root, entry in ready:
            self.gone.discard((root, entry.path))
            self.todo[(root, entry.path)] = entry
        for key in gone:
            self.todo.pop(key, None)
            self.gone.add(key)

    def write(self, connection) -> bool:
        """Drop the gone, load one batch; True while more wait to be loaded."""
        if not (self.todo or self.gone):
            return False
        if self.gone:
            self._drop(connection)
        if self.todo:
            self._load(connection)
        return bool(self.todo)

    def use_rules(self, rules: Rules) -> None:
        """Header readers that decide access with `rules`."""
        if self.readers is not None:
            self.readers.close()
        self.readers = HeaderReaders(self.config, self.config.ingest.worker_count, rules, "spawn")

    def reconfigure(self, config: Config) -> None:
        """A reloaded configuration: the files of roots no longer in it are neither loaded nor removed."""
        old = self.settler.roots
        self.config = config
        self.settler.roots = self._roots()
        for name in old.keys() - self.settler.roots.keys():
            self.settler.forget_root(name)
            self.todo = {k: v for k, v in self.todo.items() if k[0] != name}
            self.gone = {k for k in self.gone if k[0] != name}

    def forget(self) -> None:
        """Another daemon writes now: what this one had not written is its to find."""
        self.todo.clear()
        self.gone.clear()
        self.settler = Settler(self._roots())

    def close(self) -> None:
        if self.readers is not None:
            self.readers.close()

    def _load(self, connection) -> None:
        """Read and write one batch of the files waiting (one root at a time)."""
        root_name = next(iter(self.todo))[0]
        root = self.settler.roots[root_name]
        keys = [k for k in self.todo if k[0] == root_name][: self.config.ingest.batch_size]
        entries = [("changed", self.todo[k]) for k in keys]
        batch, now = Batch(root_name), time.time()
        for kind, entry, line, reason in self.readers.load(root, entries):
            if line is None and abs(now - entry.mtime_us / 1e6) < root.settle_seconds:
                # Bad now, but written moments ago (or dated ahead by a clock that is off):
                # more may be on its way. Never recorded as a failure while it grows; it is
                # read again once it has settled.
                self.settler.touched(root_name, entry.path)
                continue
            batch.add(kind, entry, line, reason)
        written = batch.write(connection)
        for key in keys:
            self.todo.pop(key, None)
        self.loaded += written.new + written.updated
        self.failed += len(written.failed)
        for path, reason in written.failed:
            log.warning("%s/%s not archived: %s", root_name, path, reason,
                        extra={"ROOT": root_name, "FILE_PATH": path, "REASON": reason})

    def _drop(self, connection) -> None:
        by_root: dict[str, list[str]] = {}
        for root, path in self.gone:
            by_root.setdefault(root, []).append(path)
        for root, paths in by_root.items():
            delete_files(connection, root, paths)
            self.removed += len(paths)
            if len(paths) <= ALWAYS_DROPPABLE:
                for path in paths:
                    log.info("%s/%s removed from the archive: no longer on disk", root, path,
                             extra={"ROOT": root, "FILE_PATH": path})
            else:
                log.info("%s: %d files removed from the archive: no longer on disk", root, len(paths),
                         extra={"ROOT": root})
        self.gone.clear()
