"""Load files into the archive: read headers in parallel, write rows in batches.

Only new and changed files are read; the scan/database merge in `watcher` decides which.
Header parsing runs in reader processes (readers.py) while this process writes the finished
rows to PostgreSQL in batches. What a reader does with one file is filerow.py.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from . import rulesources, store
from .config import Config, RootConfig
from .deletions import guard
from .readers import HeaderReaders
from .recompute import decide_directory
from .rulefile import DEFAULT_MAX_BYTES
from .schedule import current_rules
from .watcher import DiskEntry, ScanProblems, diff, name_filter, scan


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
