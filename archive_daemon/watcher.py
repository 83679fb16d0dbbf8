"""What is on disk, compared with what the database holds, and what changes on it.

Reconcile scans: the scan walks a root with os.scandir in byte order of relative paths (a directory sorts as
its name plus '/', so a depth-first walk yields exactly that order), and the database
streams its rows in the same order, so new, changed and gone files fall out of one merge
pass in constant memory, with no query per file.

Watches report changes as they happen, as (event, root name, relative path) tuples on a
queue: `touched` (may still be growing), `closed` (complete), `deleted`, and `rescan` (a
directory whose contents must be compared with the database again). inotify watches use
watchdog; polling watches only the recent night directories (see PollingWatch).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
import queue
import re
import stat
import threading
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.inotify import InotifyObserver

from .config import RootConfig
from .filekind import refusal
from .overrides import is_override


@dataclass(frozen=True)
class DiskEntry:
    path: str       # relative to the root, '/'-separated
    size: int
    mtime_us: int   # microseconds since the epoch, as the database stores it
    refusal: str | None = None  # why it is not archived whatever it holds (a link, a FIFO): filekind


@dataclass(frozen=True)
class KnownEntry:
    path: str
    size: int
    mtime_us: int
    failure: str | None  # the reason, for a row of ingest_failures


@dataclass
class ScanProblems:
    """Directories that could not be read: a reconcile must not take them for empty."""

    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (directory, why), '' the root

    def covers(self, path: str) -> bool:
        """Whether `path` lies in a directory the scan could not read."""
        return any(not d or path == d or path.startswith(d + "/") for d, _ in self.unreadable)


MAX_DEPTH = 64  # directories below a root that a scan descends: the night layout needs 3


def name_filter(include: Iterable[str], exclude: Iterable[str]):
    """A predicate on file names, compiled once from glob patterns."""
    included = re.compile("|".join(fnmatch.translate(p) for p in include) or "(?!)")
    excluded = re.compile("|".join(fnmatch.translate(p) for p in exclude) or "(?!)")
    return lambda name: bool(included.match(name)) and not excluded.match(name)


def scan(root: str, prefix: str, accept, keep_dir, problems: ScanProblems,
         rule_dirs: list[str] | None = None) -> Iterator[DiskEntry]:
    """Files under root/prefix in byte order. A prefix naming a file yields it, whatever its name.

    `accept(name)` chooses files, `keep_dir(name)` the directories to descend into. Links
    are never followed: an accepted link, a link to a directory and a special file are
    yielded with their refusal (filekind), from lstat. `rule_dirs`, if given, collects the
    directories holding an override file.
    """
    try:
        st = _lstat_below(root, prefix)
    except OSError as exc:
        problems.unreadable.append((prefix, exc.strerror))
        return
    if st is None:
        return  # below a linked directory: the scan of its parent records the link
    if stat.S_ISDIR(st.st_mode):
        start = os.path.join(root, prefix) if prefix else root
        yield from _walk(start, prefix + "/" if prefix else "", accept, keep_dir, problems, rule_dirs)
    else:
        yield DiskEntry(prefix, st.st_size, st.st_mtime_ns // 1000, refusal(st))


def _lstat_below(root: str, prefix: str) -> os.stat_result | None:
    """lstat of root/prefix, None when a directory on the way below the root is a link.

    The root itself is followed: the configuration resolved it, and a mount point may be a link.
    """
    if not prefix:
        return os.stat(root)
    parts = prefix.split("/")
    for i in range(1, len(parts)):
        if stat.S_ISLNK(os.lstat(os.path.join(root, *parts[:i])).st_mode):
            return None
    return os.lstat(os.path.join(root, prefix))


def real_directory(root: str, prefix: str) -> bool:
    """Whether root/prefix is a directory reached without following a link."""
    try:
        st = _lstat_below(root, prefix)
    except OSError:
        return False
    return st is not None and stat.S_ISDIR(st.st_mode)


def _walk(directory: str, rel: str, accept, keep_dir, problems: ScanProblems,
          rule_dirs: list[str] | None, depth: int = 0) -> Iterator[DiskEntry]:
    if depth > MAX_DEPTH:  # `mkdir -p a/a/a/...` by anyone must not end the scan in a RecursionError
        problems.unreadable.append((rel.rstrip("/"), f"nested deeper than {MAX_DEPTH} directories: not scanned"))
        return
    try:
        with os.scandir(directory) as it:
            entries = list(it)
    except OSError as exc:
        problems.unreadable.append((rel.rstrip("/"), exc.strerror))
        return
    if rule_dirs is not None and any(is_override(e.name) for e in entries):
        rule_dirs.append(rel.rstrip("/"))
    keyed = []
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if keep_dir(entry.name):
                    keyed.append((entry.name + "/", entry))
            elif accept(entry.name) or (entry.is_symlink() and keep_dir(entry.name) and entry.is_dir()):
                keyed.append((entry.name, entry))  # a linked directory is recorded, never descended
        except OSError:
            continue
    keyed.sort(key=lambda pair: pair[0])
    for key, entry in keyed:
        if key.endswith("/"):
            yield from _walk(entry.path, rel + key, accept, keep_dir, problems, rule_dirs, depth + 1)
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # vanished between listing and stat: the next scan settles it
        yield DiskEntry(rel + entry.name, st.st_size, st.st_mtime_ns // 1000, refusal(st))


def _grouped(known: Iterable[KnownEntry]) -> Iterator[list[KnownEntry]]:
    group: list[KnownEntry] = []
    for row in known:
        if group and row.path != group[0].path:
            yield group
            group = []
        group.append(row)
    if group:
        yield group


def diff(disk: Iterable[DiskEntry], known: Iterable[KnownEntry]) -> Iterator[tuple[str, DiskEntry | KnownEntry]]:
    """Merge two path-ordered streams into (kind, entry) pairs.

    Kinds: `new`, `changed` (archived, size or mtime differ), `retry` (failed before and
    changed since), `unchanged`; and with a KnownEntry, `failed` (failed before, unchanged
    since, so not worth reading again) and `gone`.
    """
    groups = _grouped(known)
    current = next(groups, None)
    for entry in disk:
        while current is not None and current[0].path < entry.path:
            for row in current:
                yield "gone", row
            current = next(groups, None)
        if current is None or current[0].path != entry.path:
            yield "new", entry
            continue
        same = [r for r in current if r.size == entry.size and r.mtime_us == entry.mtime_us]
        if any(r.failure is None for r in same):
            yield "unchanged", entry
        elif same:
            yield "failed", same[0]
        else:
            yield ("changed" if any(r.failure is None for r in current) else "retry"), entry
        current = next(groups, None)
    while current is not None:
        for row in current:
            yield "gone", row
        current = next(groups, None)


class _PathFilter:
    """Whether a relative path is one the root archives: every directory kept, the name included."""

    def __init__(self, root: RootConfig):
        self.accept = name_filter(root.include, root.exclude)
        self.keep_dir = name_filter(["*"], root.exclude)

    def __call__(self, relpath: str) -> bool:
        *dirs, name = relpath.split("/")
        return (self.accept(name) or is_override(name)) and all(map(self.keep_dir, dirs))


class _Forward(FileSystemEventHandler):
    """watchdog events of one root, as our events on the shared queue."""

    def __init__(self, root: RootConfig, events: queue.Queue):
        self.root, self.events, self.wanted = root, events, _PathFilter(root)
        self.prefix = str(root.path).rstrip("/") + "/"

    def _rel(self, path) -> str | None:
        path = os.fsdecode(path)
        return path[len(self.prefix):] if path.startswith(self.prefix) else None

    def _put(self, kind: str, path, is_dir: bool = False) -> None:
        rel = self._rel(path)
        if rel is not None and (is_dir or self.wanted(rel)):
            self.events.put((kind, self.root.name, rel))

    def on_created(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._put("touched", event.src_path)

    def on_modified(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._put("touched", event.src_path)

    def on_closed(self, event: FileSystemEvent) -> None:
        self._put("closed", event.src_path)

    def on_deleted(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._put("deleted", event.src_path)

    def on_moved(self, event: FileSystemEvent) -> None:
        if event.is_directory:  # a renamed directory: both places are compared again
            self._put("rescan", event.src_path, True)
            self._put("rescan", event.dest_path, True)
        else:  # renamed into place: complete (rsync and cp --backup write that way)
            self._put("deleted", event.src_path)
            self._put("closed", event.dest_path)


class InotifyWatch:
    """A root watched through inotify, recursively (watchdog adds new directories as they appear)."""

    mode = "inotify"

    def __init__(self, root: RootConfig, events: queue.Queue):
        self.root, self.events = root, events
        self.observer: InotifyObserver | None = None

    def start(self) -> None:
        self.observer = InotifyObserver()
        self.observer.schedule(_Forward(self.root, self.events), str(self.root.path), recursive=True)
        self.observer.daemon = True
        self.observer.start()

    def alive(self) -> bool:
        # watchdog stops an emitter thread quietly on some OSErrors (e.g. the inotify watch
        # limit): the observer thread may live on while nothing is watched any more.
        observer = self.observer
        return bool(observer and observer.is_alive() and observer.emitters
                    and all(e.is_alive() for e in observer.emitters))

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)


def recent_nights(today: dt.date, count: int) -> list[str]:
    """Night directories (`YYYY-MM/DD`) from `count` nights ago to tomorrow's."""
    days = [today + dt.timedelta(days=d) for d in range(-count, 2)]
    return [f"{d:%Y-%m}/{d:%d}" for d in days]


class PollingWatch:
    """A root polled where data arrives: the recent night directories, every poll_interval.

    Re-walking a multi-terabyte tree every few seconds is not affordable, and nothing is
    written to old nights: those are left to reconcile scans. Night directories that appear
    after start-up (a new night, a new instrument directory) are reported whole; the ones
    present at start-up were compared with the database by the start-up reconcile.
    """

    mode = "polling"

    def __init__(self, root: RootConfig, events: queue.Queue, today=dt.date.today):
        self.root, self.events, self.today = root, events, today
        files = name_filter(root.include, root.exclude)
        self.accept = lambda name: files(name) or is_override(name)
        self.keep_dir = name_filter(["*"], root.exclude)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: dict[str, dict[str, tuple[int, int]]] = {}

    def start(self) -> None:
        self._stop.clear()
        first = not self._seen
        self._thread = threading.Thread(target=self._run, args=(first,), name=f"poll-{self.root.name}", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self, first: bool) -> None:
        self.poll(report_new_nights=not first)
        while not self._stop.wait(self.root.poll_interval):
            self.poll(report_new_nights=True)

    def poll(self, report_new_nights: bool = True) -> None:
        """Compare the recent nights with the last look and report what changed."""
        nights = recent_nights(self.today(), self.root.recent_nights)
        for night in list(self._seen):
            if night not in nights:
                del self._seen[night]
        for night in nights:
            if not real_directory(str(self.root.path), night):
                continue
            problems = ScanProblems()
            now = {e.path: (e.size, e.mtime_us) for e in scan(str(self.root.path), night, self.accept,
                                                              self.keep_dir, problems)}
            before = self._seen.get(night)
            self._seen[night] = now
            if before is None and not report_new_nights:
                continue
            before = before or {}
            for path, state in now.items():
                if before.get(path) != state:
                    self.events.put(("touched", self.root.name, path))
            if not problems.unreadable and real_directory(str(self.root.path), night):
                for path in before.keys() - now.keys():
                    self.events.put(("deleted", self.root.name, path))


def make_watch(root: RootConfig, mode: str, events: queue.Queue):
    """The watch for a root in `mode` (inotify or polling, as mounts.watch_mode chose)."""
    return InotifyWatch(root, events) if mode == "inotify" else PollingWatch(root, events)
