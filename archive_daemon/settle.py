"""Hold files that are still being written until they are complete.

A file is complete when inotify saw it closed after writing (or renamed into place), or
when its size and mtime have stayed the same for `settle_seconds`: either its mtime is that
old already, or we have watched it unchanged that long. (The first test trusts the file
server's clock to agree with ours, which NTP sees to.) Paths are looked at with lstat: a
link or a FIFO settles like a file and goes on with its refusal (filekind), never followed.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass

from .config import RootConfig
from .filekind import refusal
from .watcher import DiskEntry

Key = tuple[str, str]  # (root name, path relative to the root)


@dataclass
class _Seen:
    size: int
    mtime_us: int
    since: float  # when we first saw this size and mtime
    mode: int


class Settler:
    """Files reported as touched, closed or deleted; `due()` says which to load or drop."""

    def __init__(self, roots: dict[str, RootConfig], clock=time.time):
        self.roots = roots
        self.clock = clock
        self._pending: dict[Key, _Seen | None] = {}
        self._ready: dict[Key, DiskEntry] = {}
        self._gone: set[Key] = set()

    def __len__(self) -> int:
        return len(self._pending) + len(self._ready) + len(self._gone)

    def touched(self, root: str, path: str) -> None:
        """The file may still be growing."""
        key = (root, path)
        self._gone.discard(key)
        self._ready.pop(key, None)
        self._pending.setdefault(key, None)

    def closed(self, root: str, path: str) -> None:
        """The writer is done with it."""
        key = (root, path)
        self._pending.pop(key, None)
        st = self._stat(key)
        if st is None:
            self._gone.add(key)
        else:
            self._gone.discard(key)
            self._ready[key] = _entry(path, st)

    def found(self, root: str, entry: DiskEntry) -> None:
        """A scan saw the file: complete already if its mtime is older than settle_seconds."""
        if self.clock() - entry.mtime_us / 1e6 >= self.roots[root].settle_seconds:
            key = (root, entry.path)
            self._pending.pop(key, None)
            self._gone.discard(key)
            self._ready[key] = entry
        else:
            self.touched(root, entry.path)

    def deleted(self, root: str, path: str) -> None:
        key = (root, path)
        self._pending.pop(key, None)
        self._ready.pop(key, None)
        self._gone.add(key)

    def due(self) -> tuple[list[tuple[str, DiskEntry]], list[Key]]:
        """Files now complete, and files now gone; both are forgotten once returned."""
        now = self.clock()
        for key, seen in list(self._pending.items()):
            st = self._stat(key)
            if st is None:
                del self._pending[key]
                self._gone.add(key)
                continue
            mtime_us = st.st_mtime_ns // 1000
            if seen is None or (seen.size, seen.mtime_us, seen.mode) != (st.st_size, mtime_us, st.st_mode):
                seen = self._pending[key] = _Seen(st.st_size, mtime_us, now, st.st_mode)
            settle = self.roots[key[0]].settle_seconds
            if now - mtime_us / 1e6 >= settle or now - seen.since >= settle:
                del self._pending[key]
                self._ready[key] = _entry(key[1], st)
        ready = [(key[0], entry) for key, entry in self._ready.items()]
        gone = [key for key in self._gone if self._stat(key) is None]
        self._ready.clear()
        self._gone.clear()
        return ready, gone

    def forget_root(self, name: str) -> None:
        """A root dropped from the configuration: its files are neither loaded nor removed."""
        for table in (self._pending, self._ready):
            for key in [k for k in table if k[0] == name]:
                del table[key]
        self._gone = {k for k in self._gone if k[0] != name}

    def _stat(self, key: Key) -> os.stat_result | None:
        """lstat of the path; None when nothing (or a directory) is there."""
        try:
            st = os.lstat(os.path.join(self.roots[key[0]].path, key[1]))
        except OSError:
            return None
        return None if stat.S_ISDIR(st.st_mode) else st


def _entry(path: str, st: os.stat_result) -> DiskEntry:
    return DiskEntry(path, st.st_size, st.st_mtime_ns // 1000, refusal(st))
