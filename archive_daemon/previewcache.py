"""Rendered previews on disk (written by the API when asked, and by the daemon at ingest
with `ingest.previews`), keyed by what they show: the file as it is now (device,
inode, size, modification time), the size and stretch asked for, and the renderer's
version; a changed file gets a new key and so a new preview. Bounded in bytes: writing one
evicts the least recently served beyond the bound.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

from .quicklook import render

RENDERER = "1"  # bump when quicklook.py draws differently


class PreviewCache:
    def __init__(self, directory: Path | None, max_bytes: int):
        self.directory, self.max_bytes = directory, max_bytes

    @staticmethod
    def key(st: os.stat_result, size: int, stretch: str) -> str:
        what = f"{RENDERER}:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{size}:{stretch}"
        return hashlib.sha256(what.encode()).hexdigest()[:32]

    def path(self, key: str) -> Path | None:
        """The cached preview of `key`, marked as just served; else None."""
        if self.directory is None:
            return None
        path = self.directory / f"{key}.png"
        try:
            os.utime(path)  # the eviction order: least recently served first
        except OSError:
            return None
        return path

    def put(self, key: str, png: bytes) -> None:
        """Stores a preview (atomically: a reader sees all of it or none), then evicts."""
        if self.directory is None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.directory, prefix=".", suffix=".tmp", delete=False) as out:
                out.write(png)
            os.replace(out.name, self.directory / f"{key}.png")
            self._evict()
        except OSError:
            pass  # a full or read-only cache costs a render next time, never an answer

    def _evict(self) -> None:
        entries = []
        with os.scandir(self.directory) as found:
            for entry in found:
                if entry.name.endswith(".png") and entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    entries.append((st.st_mtime_ns, st.st_size, entry.path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass  # another worker evicted it first
            total -= size


def prerender(cache: PreviewCache, path: str, sizes: tuple[int, ...], stretch: str = "asinh") -> None:
    """Renders a file's previews into the cache, as the API would key them, so that the
    first view is a cache hit. Opened like every data file (no links, regular files only),
    once per size: astropy closes the file it read."""
    for size in sizes:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as source:
            st = os.fstat(fd)
            key = PreviewCache.key(st, size, stretch)
            if stat.S_ISREG(st.st_mode) and cache.path(key) is None:
                cache.put(key, render(source, size, stretch))
