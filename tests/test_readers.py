"""Header reader processes that die: the load goes on, no file is lost, nothing hangs.

Real processes killed with real signals: an ingest whose reader is killed mid-way, a file
that kills each reader that reads it and one whose reader is killed once, an ingest killed
whose readers must end with it, the service's idle reader killed between loads.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

from archive_daemon.access import Rules, Schedule
from archive_daemon.loader import Batch
from archive_daemon.readers import HeaderReaders
from archive_daemon.watcher import DiskEntry
from conftest import failures, rows, write_config
from daemonproc import children, wait_until
from fitsmaker import image
from test_cli import ARCHIVE
from test_daemon import daemons  # noqa: F401 - the fixture

NIGHT = "2024-03/04/cam"


def copies(archive_root: Path, count: int) -> list[Path]:
    """`count` files of one real header under NIGHT."""
    first = image(archive_root / NIGHT / "r0000.fits")
    paths = [first]
    for i in range(1, count):
        paths.append(archive_root / NIGHT / f"r{i:04}.fits")
        shutil.copyfile(first, paths[-1])
    return paths


def readers_of(pid: int) -> list[int]:
    """The reader processes of `pid` (not multiprocessing's resource tracker)."""
    found = []
    for child in children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in command:
            found.append(child)
    return found


def test_an_ingest_whose_reader_is_killed_archives_every_file(database_url, tmp_path, archive_root):
    copies(archive_root, 3000)
    config = write_config(tmp_path, archive_root)
    process = subprocess.Popen([ARCHIVE, "--config", str(config), "ingest", str(archive_root), "--workers", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "ARCHIVE_DATABASE_URL": database_url})
    readers = wait_until(lambda: len(found := readers_of(process.pid)) == 2 and found, interval=0.002,
                         what="two header readers")
    for pid in readers:  # both held still, so the one killed surely holds files
        os.kill(pid, signal.SIGSTOP)
    os.kill(readers[0], signal.SIGKILL)
    os.kill(readers[1], signal.SIGCONT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "data: 3000 new, 0 updated, 0 unchanged, 0 failed" in out
    again = re.search(r"a header reader process died \(killed by SIGKILL\) with (\d+) files to read", err)
    assert again and int(again[1]) > 0, err


class KillingRules(Rules):
    """Rules whose decision kills the reader process on a file named poison.fits: a file
    that crashes whatever reads it. Defined here, so that a spawned reader has it too."""

    def decide(self, root_path, facts):
        if facts.path.endswith("poison.fits"):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().decide(root_path, facts)


def test_a_file_that_kills_every_reader_is_a_failure_and_costs_no_other(config, engine, archive_root):
    copies(archive_root, 100)
    image(archive_root / NIGHT / "poison.fits")
    entries = [("new", DiskEntry(p.relative_to(archive_root).as_posix(), p.stat().st_size,
                                 p.stat().st_mtime_ns // 1000))
               for p in sorted((archive_root / NIGHT).iterdir())]
    results: list = []
    rules = KillingRules(config.access, Schedule({}), config.keywords.frame_type_of)
    with HeaderReaders(config, 2, rules) as readers:
        loading = threading.Thread(target=lambda: results.extend(readers.load(config.root("data"), entries)))
        loading.start()
        loading.join(120)
        assert not loading.is_alive(), "the load waits for a dead reader"
    batch = Batch("data")
    for result in results:
        batch.add(*result)
    with engine.connect() as connection:
        written = batch.write(connection.connection.dbapi_connection)
    assert written.new == 100
    reason = "the header reader process died reading this file (killed by SIGKILL)"
    assert failures(engine) == {f"{NIGHT}/poison.fits": reason}
    assert len(rows(engine)) == 100


class UnluckyRules(Rules):
    """Rules whose decision kills the reader the first time it reads unlucky.fits (a mark on
    disk says it was done, for the new reader): a death that is no fault of the file."""

    def __init__(self, mark: Path, *args):
        super().__init__(*args)
        self.mark = mark

    def decide(self, root_path, facts):
        if facts.path.endswith("unlucky.fits") and not self.mark.exists():
            self.mark.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().decide(root_path, facts)


def test_a_file_whose_reader_is_killed_while_reading_it_alone_is_read_again(config, archive_root, tmp_path):
    image(archive_root / NIGHT / "unlucky.fits")
    path = archive_root / NIGHT / "unlucky.fits"
    entries = [("new", DiskEntry(f"{NIGHT}/unlucky.fits", path.stat().st_size, path.stat().st_mtime_ns // 1000))]
    rules = UnluckyRules(tmp_path / "killed-once", config.access, Schedule({}), config.keywords.frame_type_of)
    with HeaderReaders(config, 2, rules) as readers:
        results = list(readers.load(config.root("data"), entries))
    assert (tmp_path / "killed-once").exists()
    [(kind, entry, line, reason)] = results
    assert reason is None and line.startswith(f"data\t{NIGHT}/unlucky.fits\t")


def test_readers_end_with_an_ingest_killed_by_sigkill(database_url, tmp_path, archive_root, engine):
    copies(archive_root, 3000)
    config = write_config(tmp_path, archive_root)
    process = subprocess.Popen([ARCHIVE, "--config", str(config), "ingest", str(archive_root), "--workers", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "ARCHIVE_DATABASE_URL": database_url})
    readers = wait_until(lambda: len(found := readers_of(process.pid)) == 2 and found, interval=0.002,
                         what="two header readers")
    process.kill()
    process.wait()
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in readers),
               timeout=10, what="the readers of the killed ingest to end")
    with engine.connect() as connection:  # nor do they keep its database sessions open
        wait_until(lambda: connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).scalar() == 0, timeout=10, what="the killed ingest's sessions to end")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_the_service_replaces_a_killed_reader_and_goes_on(daemons, engine, archive_root):  # noqa: F811
    daemon = daemons().start()
    idle = wait_until(lambda: readers_of(daemon.process.pid), what="the service's header readers")
    os.kill(idle[0], signal.SIGKILL)
    copies(archive_root, 40)
    wait_until(lambda: len(rows(engine)) == 40, timeout=60, what="the 40 files archived")
    assert daemon.process.poll() is None
    assert failures(engine) == {}
    assert "a header reader process died (killed by SIGKILL)" in daemon.log()
    assert idle[0] not in readers_of(daemon.process.pid)
