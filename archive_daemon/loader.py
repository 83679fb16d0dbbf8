"""Load files into the archive: read headers in parallel, write rows in batches.

Only new and changed files are read; the scan/database merge in `watcher` decides which.
Header parsing is CPU-bound, so it runs in a pool of processes fed a bounded number of
chunks at a time (memory stays flat however large the tree), while this process writes
the finished rows to PostgreSQL in batches.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from typing import Callable, Iterable, Iterator

from . import access, rulesources, store
from .config import Config, RootConfig
from .fitsfile import BadFile, read_headers
from .fitsmeta import extract
from .skypos import spoint_literal, spoly_literal
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
            print(f"  unreadable: {directory or '.'}: {why}", file=out)
        for message in self.withheld:
            print(f"  not removed: {message}", file=out)
        for error in self.rule_errors:
            print(f"  rules unusable, files there readable by staff only: {error}", file=out)


def load_row(root: RootConfig, entry: DiskEntry, config: Config, rules: access.Rules) -> tuple:
    """The database row of one file (store.FILE_COLUMNS order); raises BadFile."""
    if entry.refusal:
        raise BadFile(entry.refusal)  # the scan saw a link or a special file: never opened
    headers = read_headers(os.path.join(root.path, entry.path))
    meta = extract(headers, entry.path, config.instruments, config.keywords)
    mtime = store.mtime_of(entry.mtime_us)
    facts = access.Facts(entry.path, meta.telescope, meta.instrument, meta.frame_type, meta.program,
                         meta.obs_start, mtime)
    decision = rules.decide(str(root.path), facts)
    night, guess = rules.night(str(root.path), facts)
    if guess:
        meta.notes.append(guess)
    return (
        root.name, entry.path, entry.size, mtime, night, meta.instrument, meta.telescope,
        meta.object, meta.obs_start, meta.obs_end, meta.date_source, meta.exptime, decision.frame_type,
        meta.filter, meta.program, meta.ra, meta.dec,
        None if meta.ra is None or meta.dec is None else spoint_literal(meta.ra, meta.dec),
        spoly_literal(meta.footprint) if meta.footprint else None,
        decision.public_date, headers.text, "; ".join(meta.notes) or None,
        store.array_literal(decision.grants), store.rule_text(decision), meta.frame_type,
    )


def _load_chunk(root: RootConfig, chunk: list[tuple[str, DiskEntry]], config: Config, rules: access.Rules) -> list:
    results = []
    for kind, entry in chunk:
        try:
            results.append((kind, entry, store.copy_line(load_row(root, entry, config, rules)), None))
        except BadFile as exc:
            results.append((kind, entry, None, str(exc)))
        except Exception as exc:  # a bug must cost one file, never the run
            results.append((kind, entry, None, f"internal error reading the file: {type(exc).__name__}: {exc}"))
    return results


_worker_state: list = []


def _init_worker(config: Config, rules: access.Rules) -> None:
    # Ctrl-C reaches the whole process group: the parent decides what stops, and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_state[:] = [config, rules]


def _worker_chunk(task):
    root, chunk = task
    return _load_chunk(root, chunk, *_worker_state)


def _chunks(root: RootConfig, items: Iterator, size: int, gate: threading.Semaphore | None) -> Iterator:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            if gate is not None:
                gate.acquire()
            yield root, chunk
            chunk = []
    if chunk:
        if gate is not None:
            gate.acquire()
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
    """The processes that read headers: one per worker, forked once and reused by every load.

    With one worker, headers are read in this process.
    """

    def __init__(self, config: Config, workers: int, rules: access.Rules, start_method: str = "fork"):
        # fork starts at once; a process that already runs threads (the daemon) spawns instead,
        # since a child forked while another thread holds a lock can hang on it.
        self.config = config
        self.rules = rules
        self.workers = workers
        self._pool = None
        if workers > 1:
            self._pool = multiprocessing.get_context(start_method).Pool(workers, initializer=_init_worker,
                                                                        initargs=(config, rules))

    def load(self, root: RootConfig, todo: Iterable[tuple[str, DiskEntry]]) -> Iterator[tuple]:
        """(kind, entry, COPY line or None, failure reason or None) for each file, in any order."""
        if self._pool is None:
            for _, chunk in _chunks(root, todo, CHUNK, None):
                yield from _load_chunk(root, chunk, self.config, self.rules)
            return
        # Enough work in flight for the workers to go on while a batch is being written.
        gate = threading.Semaphore(max(self.workers * CHUNKS_PER_WORKER, 2 * self.config.ingest.batch_size // CHUNK))
        for results in self._pool.imap_unordered(_worker_chunk, _chunks(root, iter(todo), CHUNK, gate)):
            gate.release()
            yield from results

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


class Batch:
    """Loaded rows and failures waiting to be written together."""

    def __init__(self):
        self.lines: list[str] = []
        self.failures: list[tuple] = []
        self.kinds: set[str] = set()

    def __len__(self) -> int:
        return len(self.lines) + len(self.failures)

    def add(self, root: str, kind: str, entry: DiskEntry, line: str | None, reason: str | None) -> None:
        if line is not None:
            self.lines.append(line)
            self.kinds.add(kind)
        else:
            self.failures.append((root, entry.path, entry.size, store.mtime_of(entry.mtime_us), reason))

    def write(self, connection) -> None:
        """One transaction; on an error nothing of the batch is written and it can be tried again."""
        store.write_batch(connection, self.lines, self.failures, all_new=self.kinds == {"new"})
        self.lines, self.failures, self.kinds = [], [], set()


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

    batch = Batch()
    with engine.connect() as writing:
        dbapi = writing.connection.dbapi_connection
        rules = current_rules(dbapi, config)
        with HeaderReaders(config, workers, rules) as readers:
            for kind, entry, line, reason in readers.load(root, todo()):
                batch.add(root.name, kind, entry, line, reason)
                if line is None:
                    summary.failed.append((entry.path, reason))
                elif kind == "changed":
                    summary.updated += 1
                else:
                    summary.new += 1
                on_progress(1)
                if len(batch) >= config.ingest.batch_size:
                    batch.write(dbapi)
        batch.write(dbapi)
        for directory in summary.rules_changed:
            decide_directory(dbapi, config, rules, root.name, directory)
        summary.rule_errors = [e for prefix in prefixes for e in rulesources.errors(dbapi, root.name, prefix)]
        dbapi.commit()
        if drop_gone:
            deletions = guard(root, summary.gone, summary.known, summary.problems,
                              config.daemon.max_delete_fraction, allow_mass_delete)
            store.delete_files(dbapi, root.name, deletions.drop)
            summary.removed, summary.withheld = len(deletions.drop), deletions.withheld
    return summary
