"""Load files into the archive: read headers in parallel, write rows in batches.

Only new and changed files are read; the scan/database merge in `watcher` decides which.
Header parsing is CPU-bound, so it runs in a pool of processes fed a bounded number of
chunks at a time (memory stays flat however large the tree), while this process writes
the finished rows to PostgreSQL in batches.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from . import access, store
from .config import Config, RootConfig
from .fitsfile import BadFile, read_headers
from .fitsmeta import extract
from .skypos import spoint_literal, spoly_literal
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

    @property
    def ok(self) -> bool:
        return not (self.failed or self.failed_unchanged or self.problems.unreadable)

    def report(self, root_name: str, out=None) -> None:
        """The summary line, then one line per file that is not archived."""
        out = out or sys.stdout
        failed = len(self.failed) + len(self.failed_unchanged)
        print(f"{root_name}: {self.new} new, {self.updated} updated, {self.unchanged} unchanged, "
              f"{failed} failed", file=out)
        for path, reason in self.failed:
            print(f"  failed: {path}: {reason}", file=out)
        for path, reason in self.failed_unchanged:
            print(f"  failed (unchanged since the last attempt): {path}: {reason}", file=out)
        for problem in self.problems.unreadable:
            print(f"  unreadable: {problem}", file=out)


def load_row(root: RootConfig, entry: DiskEntry, config: Config) -> tuple:
    """The database row of one file (store.FILE_COLUMNS order); raises BadFile."""
    headers = read_headers(os.path.join(root.path, entry.path))
    meta = extract(headers, entry.path, config.instruments, config.keywords)
    mtime = store.mtime_of(entry.mtime_us)
    return (
        root.name, entry.path, entry.size, mtime, meta.night, meta.instrument, meta.telescope,
        meta.object, meta.obs_start, meta.obs_end, meta.date_source, meta.exptime, meta.frame_type,
        meta.filter, meta.program, meta.ra, meta.dec,
        None if meta.ra is None or meta.dec is None else spoint_literal(meta.ra, meta.dec),
        spoly_literal(meta.footprint) if meta.footprint else None,
        access.public_date(meta.night, mtime, config.access), headers.text,
        "; ".join(meta.notes) or None,
    )


def _load_chunk(root: RootConfig, chunk: list[tuple[str, DiskEntry]], config: Config) -> list:
    results = []
    for kind, entry in chunk:
        try:
            results.append((kind, entry, store.copy_line(load_row(root, entry, config)), None))
        except BadFile as exc:
            results.append((kind, entry, None, str(exc)))
        except Exception as exc:  # a bug must cost one file, never the run
            results.append((kind, entry, None, f"internal error reading the file: {type(exc).__name__}: {exc}"))
    return results


_worker_state: dict = {}


def _init_worker(root: RootConfig, config: Config) -> None:
    _worker_state.update(root=root, config=config)


def _worker_chunk(chunk):
    return _load_chunk(_worker_state["root"], chunk, _worker_state["config"])


def _chunks(items: Iterator, size: int, gate: threading.Semaphore | None) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            if gate is not None:
                gate.acquire()
            yield chunk
            chunk = []
    if chunk:
        if gate is not None:
            gate.acquire()
        yield chunk


def load_entries(root: RootConfig, todo: Iterator[tuple[str, DiskEntry]], config: Config,
                 workers: int) -> Iterator[tuple]:
    """(kind, entry, COPY line or None, failure reason or None) for each file, in any order."""
    if workers <= 1:
        for chunk in _chunks(todo, CHUNK, None):
            yield from _load_chunk(root, chunk, config)
        return
    # Enough work in flight for the workers to go on while a batch is being written.
    gate = threading.Semaphore(max(workers * CHUNKS_PER_WORKER, 2 * config.ingest.batch_size // CHUNK))
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_init_worker, initargs=(root, config)) as pool:
        for results in pool.imap_unordered(_worker_chunk, _chunks(todo, CHUNK, gate)):
            gate.release()
            yield from results


def ingest(engine, config: Config, root: RootConfig, prefixes: Iterable[str], workers: int,
           on_progress: Callable[[int], None] = lambda n: None) -> Summary:
    """Bring the database up to date with the files under `prefixes` of one root."""
    summary = Summary()
    accept = name_filter(root.include, root.exclude)
    keep_dir = name_filter(["*"], root.exclude)

    def todo() -> Iterator[tuple[str, DiskEntry]]:
        with engine.connect() as reading:
            dbapi = reading.connection.dbapi_connection
            for prefix in prefixes:
                disk = scan(str(root.path), prefix, accept, keep_dir, summary.problems)
                for kind, entry in diff(disk, store.known_entries(dbapi, root.name, prefix)):
                    if kind == "unchanged":
                        summary.unchanged += 1
                        on_progress(1)
                    elif kind == "failed":
                        summary.failed_unchanged.append((entry.path, entry.failure))
                        on_progress(1)
                    elif kind != "gone":
                        yield kind, entry
            dbapi.rollback()

    lines, failures, kinds = [], [], set()
    with engine.connect() as writing:
        dbapi = writing.connection.dbapi_connection

        def flush():
            store.write_batch(dbapi, lines, failures, all_new=kinds == {"new"})
            lines.clear()
            failures.clear()
            kinds.clear()

        for kind, entry, line, reason in load_entries(root, todo(), config, workers):
            if line is not None:
                lines.append(line)
                kinds.add(kind)
                if kind == "changed":
                    summary.updated += 1
                else:
                    summary.new += 1
            else:
                failures.append((root.name, entry.path, entry.size, store.mtime_of(entry.mtime_us), reason))
                summary.failed.append((entry.path, reason))
            on_progress(1)
            if len(lines) + len(failures) >= config.ingest.batch_size:
                flush()
        flush()
    return summary
