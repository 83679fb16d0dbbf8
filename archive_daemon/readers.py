"""The processes that read headers for the loader, and what a reader's death costs: nothing.

Header parsing is CPU-bound, so it runs in reader processes, each fed chunks of files through
a pipe of its own; a thread per reader takes its results as they come, so the readers go on
while the loader writes a batch. A bounded number of chunks is in flight at a time, so memory
stays flat however large the tree.

A reader can die mid-chunk: the OOM killer, an operator's kill, a library crashing on a
hostile header. Its chunks are then read again by a new reader, the one it was reading one
file per task, and a file that kills two readers on its own is a failure with that reason.
So a load never waits for a reader that is gone, and no file outside that one is lost.
"""

from __future__ import annotations

import collections
import importlib
import itertools
import logging
import multiprocessing
import os
import queue
import signal
import threading
from multiprocessing import resource_tracker
from typing import Iterable, Iterator

from . import access
from .config import Config, RootConfig
from .watcher import DiskEntry

CHUNK = 32            # files per task sent to a reader
CHUNKS_PER_WORKER = 4  # tasks in flight per reader: enough to keep it busy, no more
TRIES_ALONE = 2        # deaths of a reader reading a file alone before the file is failed
STOP_WAIT = 10.0       # seconds to wait for a killed reader to end

log = logging.getLogger(__name__)


def _read(root: RootConfig, chunk: list, config: Config, rules: access.Rules) -> list:
    from .filerow import load_chunk  # the reading code, imported by the first read
    return load_chunk(root, chunk, config, rules)


def _serve(tasks, results, config: Config, rules: access.Rules) -> None:
    """A reader process: read each chunk sent, send back its results, until the pipe closes."""
    # Ctrl-C reaches the whole process group: the loader decides what stops, and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _close_inherited(tasks.fileno(), results.fileno())
    while True:
        try:
            root, chunk = tasks.recv()
        except EOFError:
            return
        results.send(_read(root, chunk, config, rules))


def _close_inherited(*keep: int) -> None:
    """Close every descriptor but the standard three and `keep`.

    A forked reader inherits the loader's ends of its own pipes and of the other readers',
    and the loader's database connections. Holding them, it would never see its pipes close
    when the loader dies, however it dies (kill -9, the OOM killer), and would keep the dead
    loader's sessions open: it would outlive it, blocked.
    """
    bounds = sorted({2, *keep}) + [os.sysconf("SC_OPEN_MAX")]
    for low, high in zip(bounds, bounds[1:]):
        os.closerange(low + 1, high)


def _stop_resource_tracker() -> None:
    """End multiprocessing's resource tracker (started with the first spawned reader) now.

    Left alone, it ends only after this process does, when it sees our end of its pipe
    close; systemd SIGKILLs, and logs, whatever outlives a service's main process. A later
    start begins a new one.
    """
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    stop = getattr(tracker, "_stop", None)  # private, but the only way to end it and wait for it
    if stop is not None:
        stop()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


class _Reader:
    """One reader process, its two pipes, the thread that passes its results on, and the
    chunks sent to it and not yet answered, oldest first (a reader answers in order)."""

    def __init__(self, context, config: Config, rules: access.Rules, inbox: queue.Queue):
        self.inbox = inbox
        task_out, self.tasks = context.Pipe(duplex=False)
        self.results, result_in = context.Pipe(duplex=False)
        self.process = context.Process(target=_serve, args=(task_out, result_in, config, rules), daemon=True)
        self.process.start()
        task_out.close()   # the reader holds these ends alone: its death closes them, and
        result_in.close()  # our end of its results pipe reads end of file
        self.sent: collections.deque[list] = collections.deque()
        self.thread = threading.Thread(target=self._receive, name="header-reader-results", daemon=True)

    def _receive(self) -> None:
        try:
            while True:
                self.inbox.put((self, self.results.recv()))
        except (EOFError, OSError):  # the reader died, or was stopped
            self.inbox.put((self, None))

    def send(self, root: RootConfig, chunk: list) -> None:
        self.sent.append(chunk)
        try:
            self.tasks.send((root, chunk))
        except OSError:  # died already: its thread reports it, and the chunk is read again
            pass

    def stop(self) -> str:
        """Kill the process (if still alive) and close the pipes; how it ended.

        A reader has nothing to save, and SIGKILL also ends one that is stopped. One stuck
        in the kernel (a hung NFS read) cannot end; after STOP_WAIT it is left behind."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(STOP_WAIT)
        self.tasks.close()
        if self.thread.ident is not None:  # started: it ends at the end of file it now reads
            self.thread.join(STOP_WAIT)
        self.results.close()
        return _death(self.process.exitcode)


class HeaderReaders:
    """The processes that read headers: one per worker, started once and reused by every load.

    With one worker, headers are read in this process. Forked readers start with the first
    file to read, after this process imported the reading code for them all: a load with
    nothing to read never starts them. Spawned readers (the daemon's) start at once,
    ready for the first file. A reader started to replace a dead one is always spawned, since
    this process then runs threads, and a child forked while a thread holds a lock can hang.
    """

    def __init__(self, config: Config, workers: int, rules: access.Rules, start_method: str = "fork"):
        self.config = config
        self.rules = rules
        self.workers = workers
        self.start_method = start_method
        self._readers: list[_Reader] = []
        self._inbox: queue.Queue = queue.Queue()
        if workers > 1 and start_method != "fork":
            self._start()

    def _start(self) -> None:
        if self.start_method == "fork":  # imported once here, inherited by every reader
            importlib.import_module(f"{__package__}.filerow")
        self._inbox = queue.Queue()
        context = multiprocessing.get_context(self.start_method)
        self._readers = [_Reader(context, self.config, self.rules, self._inbox) for _ in range(self.workers)]
        for reader in self._readers:  # threads only once every fork is done
            reader.thread.start()

    def _replace(self, dead: _Reader) -> tuple[str, list[list]]:
        """A new reader in place of a dead one; how the dead one ended, and the chunks it held."""
        how = dead.stop()
        lost = list(dead.sent)
        log.warning("a header reader process died (%s) with %d files to read; they are read again",
                    how, sum(len(chunk) for chunk in lost))
        reader = _Reader(multiprocessing.get_context("spawn"), self.config, self.rules, self._inbox)
        reader.thread.start()
        self._readers[self._readers.index(dead)] = reader
        return how, lost

    def load(self, root: RootConfig, todo: Iterable[tuple[str, DiskEntry]]) -> Iterator[tuple]:
        """(kind, entry, COPY line or None, failure reason or None) for each file, in any order;
        kind "gone" (and neither line nor reason) for a file deleted before it was read."""
        todo = iter(todo)
        if any(reader.sent for reader in self._readers):
            self.close()  # a load left unfinished, and not closed: its chunks are no one's now
        if self.workers <= 1:
            for chunk in _chunks(todo, CHUNK):
                yield from _read(root, chunk, self.config, self.rules)
            return
        if not self._readers:
            first = next(todo, None)
            if first is None:
                return
            todo = itertools.chain([first], todo)
            self._start()
        # Enough work in flight for the readers to go on while a batch is being written.
        limit = max(self.workers * CHUNKS_PER_WORKER, 2 * self.config.ingest.batch_size // CHUNK)
        fresh, again = _chunks(todo, CHUNK), collections.deque()
        in_flight = 0
        deaths: dict[str, int] = {}  # path -> readers that died reading it alone
        try:
            while True:
                while in_flight < limit and (chunk := again.popleft() if again else next(fresh, None)):
                    min(self._readers, key=lambda r: len(r.sent)).send(root, chunk)
                    in_flight += 1
                if not in_flight:
                    return
                reader, results = self._inbox.get()
                if results is not None:
                    reader.sent.popleft()
                    in_flight -= 1
                    yield from results
                    continue
                how, lost = self._replace(reader)
                in_flight -= len(lost)
                if not lost:  # died idle
                    continue
                # The first was being read when it died; the others were never begun (a
                # reader takes its chunks in order) and go as they are.
                again.extend(lost[1:])
                if len(lost[0]) > 1:
                    again.extend([item] for item in lost[0])
                    continue
                kind, entry = lost[0][0]
                deaths[entry.path] = deaths.get(entry.path, 0) + 1
                if deaths[entry.path] < TRIES_ALONE:  # the death may have been no fault of its own
                    again.append(lost[0])
                else:  # it kills whatever reads it: a failure, not tried again as it is
                    yield kind, entry, None, f"the header reader process died reading this file ({how})"
        finally:
            if in_flight:  # abandoned mid-way: what is still being read belongs to no load
                self.close()

    def close(self) -> None:
        readers, self._readers = self._readers, []
        for reader in readers:
            reader.stop()
        if readers:
            _stop_resource_tracker()

    def __enter__(self) -> "HeaderReaders":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk
