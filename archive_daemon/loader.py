"""Load files into the archive: read headers in parallel, write rows in batches.

Only new and changed files are read; the scan/database merge in `watcher` decides which.
Header parsing is CPU-bound, so it runs in a pool of processes fed a bounded number of
chunks at a time (memory stays flat however large the tree), while this process writes
the finished rows to PostgreSQL in batches. What a reader does with one file is filerow.py.
"""

from __future__ import annotations

import importlib
import itertools
import multiprocessing
import signal
import sys
import threading
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from typing import Callable, Iterable, Iterator

from . import access, rulesources, store
from .config import Config, RootConfig
from .deletions import guard
from .recompute import decide_directory
from .rulefile import DEFAULT_MAX_BYTES
from .schedule import current_rules
from .watcher import DiskEntry, ScanProblems, diff, name_filter, scan

CHUNK = 32            # files per task sent to a worker process
CHUNKS_PER_WORKER = 4  # tasks in flight per worker: enough to keep it busy, no more


@dataclass
class Summary:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    failed_unchanged: list[tuple[str, str]] = field(default_factory=list)
    problems: ScanProblems = field(default_factory=ScanProblems)
    known: int = 0                      # rows the database held under the scanned prefixes
    gone: list[str] = field(default_factory=list)
    removed: int = 0
    withheld: list[str] = field(default_factory=list)
    rules_changed: list[str] = field(default_factory=list)  # directories to decide again
    rule_errors: list[str] = field(default_factory=list)    # why directories scanned fail closed

    def add(self, written: "Written") -> None:
        """Count what one batch wrote."""
        self.new += written.new
        self.updated += written.updated
        self.failed += written.failed
        self.removed += len(written.removed)

    @property
    def ok(self) -> bool:
        return not (self.failed or self.failed_unchanged or self.problems.unreadable or self.withheld
                    or self.rule_errors)

    def report(self, root_name: str, out=None) -> None:
        """The summary line, then one line per file that is not archived."""
        out = out or sys.stdout
        failed = len(self.failed) + len(self.failed_unchanged)
        removed = f", {self.removed} removed" if self.removed else ""
        print(f"{root_name}: {self.new} new, {self.updated} updated, {self.unchanged} unchanged{removed}, "
              f"{failed} failed", file=out)
        for path, reason in self.failed:
            print(f"  failed: {path}: {reason}", file=out)
        for path, reason in self.failed_unchanged:
            print(f"  failed (unchanged since the last attempt): {path}: {reason}", file=out)
        for directory, why in self.problems.unreadable:
            print(f"  unreadable: {store.storable(directory) or '.'}: {why}", file=out)
        for message in self.withheld:
            print(f"  not removed: {message}", file=out)
        for error in self.rule_errors:
            print(f"  rules unusable, files there readable by staff only: {error}", file=out)


_worker_state: list = []


def _init_worker(config: Config, rules: access.Rules) -> None:
    # Ctrl-C reaches the whole process group: the parent decides what stops, and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_state[:] = [config, rules]


def _worker_chunk(task):
    root, chunk = task
    return _read(root, chunk, *_worker_state)


def _read(root: RootConfig, chunk: list, config: Config, rules: access.Rules) -> list:
    # Imported at the first header read, not before: astropy takes a third of a second to
    # import, which a load with nothing to read never spends.
    from .filerow import load_chunk
    return load_chunk(root, chunk, config, rules)


class _Gate:
    """How many chunks may be in flight to the readers.

    The pool feeds itself from `_chunks` in a thread of its own, which waits here while the
    readers are full. Pool.terminate() waits for that thread, so a load that ends, however
    it ends (a batch the database failed abandons it mid-way), closes its gate for good and
    the feeding stops; otherwise the thread, and terminate(), would wait for ever.
    """

    def __init__(self, slots: int):
        self._slots = slots
        self._closed = False
        self._changed = threading.Condition()

    def enter(self) -> bool:
        """Wait for a free slot; False once closed."""
        with self._changed:
            self._changed.wait_for(lambda: self._slots > 0 or self._closed)
            if self._closed:
                return False
            self._slots -= 1
            return True

    def leave(self) -> None:
        with self._changed:
            self._slots += 1
            self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()


def _chunks(root: RootConfig, items: Iterator, size: int, gate: _Gate | None) -> Iterator:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            if gate is not None and not gate.enter():
                return
            yield root, chunk
            chunk = []
    if chunk and (gate is None or gate.enter()):
        yield root, chunk


def _stop_resource_tracker() -> None:
    """End multiprocessing's resource tracker (started with the first spawned reader) now.

    Left alone, it ends only after this process does, when it sees our end of its pipe
    close; systemd SIGKILLs, and logs, whatever outlives a service's main process. A later
    pool starts a new one.
    """
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    stop = getattr(tracker, "_stop", None)  # private, but the only way to end it and wait for it
    if stop is not None:
        stop()


class HeaderReaders:
    """The processes that read headers: one per worker, started once and reused by every load.

    With one worker, headers are read in this process. Forked readers start with the first
    file to read, after this process imported the reading code (astropy) for them all: a
    load with nothing to read never imports it. Spawned readers (the daemon's) start at once,
    ready for the first file.
    """

    def __init__(self, config: Config, workers: int, rules: access.Rules, start_method: str = "fork"):
        # fork starts at once; a process that already runs threads (the daemon) spawns instead,
        # since a child forked while another thread holds a lock can hang on it.
        self.config = config
        self.rules = rules
        self.workers = workers
        self.start_method = start_method
        self._pool = None
        if workers > 1 and start_method != "fork":
            self._start()

    def _start(self) -> None:
        if self.start_method == "fork":  # imported once here, inherited by every reader
            importlib.import_module(f"{__package__}.filerow")
        self._pool = multiprocessing.get_context(self.start_method).Pool(
            self.workers, initializer=_init_worker, initargs=(self.config, self.rules))

    def load(self, root: RootConfig, todo: Iterable[tuple[str, DiskEntry]]) -> Iterator[tuple]:
        """(kind, entry, COPY line or None, failure reason or None) for each file, in any order;
        kind "gone" (and neither line nor reason) for a file deleted before it was read."""
        todo = iter(todo)
        if self.workers <= 1:
            for _, chunk in _chunks(root, todo, CHUNK, None):
                yield from _read(root, chunk, self.config, self.rules)
            return
        if self._pool is None:
            first = next(todo, None)
            if first is None:
                return
            todo = itertools.chain([first], todo)
            self._start()
        # Enough work in flight for the workers to go on while a batch is being written.
        gate = _Gate(max(self.workers * CHUNKS_PER_WORKER, 2 * self.config.ingest.batch_size // CHUNK))
        try:
            for results in self._pool.imap_unordered(_worker_chunk, _chunks(root, todo, CHUNK, gate)):
                gate.leave()
                yield from results
        finally:  # finished, or abandoned: either way nothing more is to be fed
            gate.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
            _stop_resource_tracker()

    def __enter__(self) -> "HeaderReaders":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def compare(connection, root: RootConfig, prefixes: Iterable[str], summary: Summary,
            on_skip: Callable[[int], None] = lambda n: None,
            rule_file_max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[tuple[str, DiskEntry]]:
    """The files under `prefixes` that need reading (new, changed, retry), from one streaming
    merge of disk and database; unchanged, failed and gone files are counted in `summary`,
    and the directories whose rule source changed since their files were decided are listed
    in `summary.rules_changed`: override files are compared as well as data files."""
    accept = name_filter(root.include, root.exclude)
    keep_dir = name_filter(["*"], root.exclude)
    for prefix in prefixes:
        rule_dirs: list[str] = []
        unreadable = len(summary.problems.unreadable)
        disk = scan(str(root.path), prefix, accept, keep_dir, summary.problems, rule_dirs)
        for kind, entry in diff(disk, store.known_entries(connection, root.name, prefix)):
            if kind == "unchanged":
                summary.unchanged += 1
                on_skip(1)
            elif kind == "failed":
                summary.failed_unchanged.append((entry.path, entry.failure))
                on_skip(1)
            elif kind == "gone":
                summary.gone.append(entry.path)
            else:
                yield kind, entry
            if kind in ("unchanged", "failed", "gone", "changed"):
                summary.known += 1
        rule_dirs += [d for d, _ in summary.problems.unreadable[unreadable:]]  # they fail closed
        summary.rules_changed += rulesources.changed(connection, root.name, str(root.path), prefix, rule_dirs,
                                                     rule_file_max_bytes)
    connection.rollback()


@dataclass
class Written:
    """What one batch wrote: files archived (new, updated), not archived, and vanished ones dropped."""

    new: int = 0
    updated: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path as recorded, reason)
    removed: list[str] = field(default_factory=list)


class Batch:
    """Loaded rows, failures and vanished files of one root, waiting to be written together."""

    def __init__(self, root: str):
        self.root = root
        self._clear()

    def _clear(self) -> None:
        self.lines: list[str] = []
        self.keys: list[tuple] = []          # (root, path, size, mtime) of each line
        self.kinds: list[str] = []
        self.failures: list[tuple] = []
        self.vanished: list[str] = []

    def __len__(self) -> int:
        return len(self.lines) + len(self.failures) + len(self.vanished)

    def add(self, kind: str, entry: DiskEntry, line: str | None, reason: str | None) -> None:
        """One result of HeaderReaders.load."""
        if kind == "gone":
            self.vanished.append(entry.path)
            return
        mtime = store.mtime_of(entry.mtime_us)
        if line is not None:
            self.lines.append(line)
            self.keys.append((self.root, entry.path, entry.size, mtime))
            self.kinds.append(kind)
        else:
            self.failures.append((self.root, store.failure_path(entry.path), entry.size, mtime,
                                  store.storable(reason)))

    def write(self, connection) -> Written:
        """One transaction; on an error nothing of the batch is written and it can be tried again.

        A row the database refuses is recorded as a failure (store.write_batch)."""
        if self.vanished:
            store.delete_files(connection, self.root, self.vanished)
        refused = store.write_batch(connection, self.lines, self.keys, self.failures,
                                    all_new=set(self.kinds) == {"new"})
        written = Written(failed=[(path, reason) for _, path, _, _, reason in [*self.failures, *refused]],
                          removed=self.vanished)
        refused_paths = {path for _, path, _, _, _ in refused}
        for kind, (_, path, _, _) in zip(self.kinds, self.keys):
            if store.failure_path(path) not in refused_paths:
                written.updated += kind == "changed"
                written.new += kind != "changed"  # new, or a failed file now archived
        self._clear()
        return written


def ingest(engine, config: Config, root: RootConfig, prefixes: Iterable[str], workers: int,
           on_progress: Callable[[int], None] = lambda n: None, drop_gone: bool = False,
           allow_mass_delete: bool = False) -> Summary:
    """Bring the database up to date with the files under `prefixes` of one root; with
    `drop_gone`, also drop the rows of files no longer there (see reconcile.guard)."""
    summary, prefixes = Summary(), list(prefixes)

    def todo() -> Iterator[tuple[str, DiskEntry]]:
        with engine.connect() as reading:
            yield from compare(reading.connection.dbapi_connection, root, prefixes, summary, on_progress,
                               config.access.rule_file_max_bytes)

    batch = Batch(root.name)
    with engine.connect() as writing:
        dbapi = writing.connection.dbapi_connection
        rules = current_rules(dbapi, config)
        with HeaderReaders(config, workers, rules) as readers:
            for result in readers.load(root, todo()):
                batch.add(*result)
                on_progress(1)
                if len(batch) >= config.ingest.batch_size:
                    summary.add(batch.write(dbapi))
        summary.add(batch.write(dbapi))
        for directory in summary.rules_changed:
            decide_directory(dbapi, config, rules, root.name, directory)
        summary.rule_errors = [e for prefix in prefixes for e in rulesources.errors(dbapi, root.name, prefix)]
        dbapi.commit()
        if drop_gone:
            deletions = guard(root, summary.gone, summary.known, summary.problems,
                              config.daemon.max_delete_fraction, allow_mass_delete)
            store.delete_files(dbapi, root.name, deletions.drop)
            summary.removed += len(deletions.drop)
            summary.withheld = deletions.withheld
    return summary
