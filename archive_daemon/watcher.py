"""What is on disk, compared with what the database holds.

The scan walks a root with os.scandir in byte order of relative paths (a directory sorts as
its name plus '/', so a depth-first walk yields exactly that order), and the database
streams its rows in the same order, so new, changed and gone files fall out of one merge
pass in constant memory, with no query per file.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Iterable, Iterator


@dataclass(frozen=True)
class DiskEntry:
    path: str       # relative to the root, '/'-separated
    size: int
    mtime_us: int   # microseconds since the epoch, as the database stores it


@dataclass(frozen=True)
class KnownEntry:
    path: str
    size: int
    mtime_us: int
    failure: str | None  # the reason, for a row of ingest_failures


@dataclass
class ScanProblems:
    """Directories that could not be read: a reconcile must not take them for empty."""

    unreadable: list[str] = field(default_factory=list)


def name_filter(include: Iterable[str], exclude: Iterable[str]):
    """A predicate on file names, compiled once from glob patterns."""
    included = re.compile("|".join(fnmatch.translate(p) for p in include) or "(?!)")
    excluded = re.compile("|".join(fnmatch.translate(p) for p in exclude) or "(?!)")
    return lambda name: bool(included.match(name)) and not excluded.match(name)


def scan(root: str, prefix: str, accept, keep_dir, problems: ScanProblems) -> Iterator[DiskEntry]:
    """Files under root/prefix in byte order. A prefix naming a file yields it, whatever its name.

    `accept(name)` chooses files, `keep_dir(name)` the directories to descend into.
    """
    start = os.path.join(root, prefix) if prefix else root
    try:
        st = os.stat(start)
    except OSError as exc:
        problems.unreadable.append(f"{prefix or '.'}: {exc.strerror}")
        return
    if os.path.isdir(start):
        yield from _walk(start, prefix + "/" if prefix else "", accept, keep_dir, problems)
    else:
        yield DiskEntry(prefix, st.st_size, st.st_mtime_ns // 1000)


def _walk(directory: str, rel: str, accept, keep_dir, problems: ScanProblems) -> Iterator[DiskEntry]:
    try:
        with os.scandir(directory) as it:
            entries = list(it)
    except OSError as exc:
        problems.unreadable.append(f"{rel or '.'}: {exc.strerror}")
        return
    keyed = []
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if keep_dir(entry.name):
                    keyed.append((entry.name + "/", entry))
            elif accept(entry.name):
                keyed.append((entry.name, entry))
        except OSError:
            continue
    keyed.sort(key=lambda pair: pair[0])
    for key, entry in keyed:
        if key.endswith("/"):
            yield from _walk(entry.path, rel + key, accept, keep_dir, problems)
            continue
        try:
            st = entry.stat()
        except OSError:
            continue  # vanished between listing and stat: the next scan settles it
        if not stat.S_ISREG(st.st_mode):
            continue
        yield DiskEntry(rel + entry.name, st.st_size, st.st_mtime_ns // 1000)


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
