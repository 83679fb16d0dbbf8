"""What the benchmark scripts share: a PostgreSQL of their own, fresh databases, timed commands."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg2  # noqa: E402

from archive_daemon import db  # noqa: E402
from archive_daemon.devdb import DevDB  # noqa: E402


class CommandFailed(RuntimeError):
    """An archive-daemon command a benchmark ran exited with an error."""


def tree_sizes(doc: str, default: int) -> list[int]:
    """The --files N options (repeatable) of a benchmark's command line."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, action="append", help=f"tree sizes to measure (default {default})")
    return parser.parse_args().files or [default]


def percentile(values: list[float], q: float) -> float:
    """The value below which a share q of the values lie (the nearest one measured)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@contextlib.contextmanager
def workspace(what: str):
    """A scratch directory and a PostgreSQL cluster in it with default durability (fsync on,
    as in production); both are gone afterwards. Yields (directory, cluster)."""
    work = Path(tempfile.mkdtemp(prefix="archive-bench-"))
    os.chmod(work, 0o755)
    devdb = DevDB(work)
    devdb.start()
    print(f"machine: {os.cpu_count()} cores; database: PostgreSQL in {work} (fsync on); {what}")
    try:
        yield work, devdb
    finally:
        devdb.stop()
        shutil.rmtree(work, ignore_errors=True)


def fresh_database(devdb: DevDB, name: str) -> str:
    base = devdb.url()
    engine = db.create_engine(base.rsplit("/", 1)[0] + "/postgres")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    url = base.rsplit("/", 1)[0] + "/" + name
    db.upgrade(db.create_engine(url))
    return url


@dataclasses.dataclass
class Ran:
    """An archive-daemon command as run_command saw it."""

    elapsed: float        # seconds, start-up included
    peak_mb: float        # peak memory of the process or of one of its readers
    summary: str          # what it printed
    cpu_command: float    # CPU seconds of the command's own process
    cpu_readers: float    # ... of its header-reading processes
    cpu_postgres: float   # ... of the PostgreSQL server meanwhile (postgres_cpu)


def _stat(pid: int | str) -> list[str]:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()  # fields from the third (state) on


def postgres_cpu(url: str) -> float:
    """CPU seconds used so far by the PostgreSQL server at `url`: its postmaster and every
    process it started, living or reaped (other clusters on the machine are not counted)."""
    connection = psycopg2.connect(db.libpq_url(url))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        postmaster = int(_stat(cursor.fetchone()[0])[1])  # the backend's parent
    connection.close()
    total = sum(int(f) for f in _stat(postmaster)[11:15])  # utime, stime, and of reaped children
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = _stat(pid)
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == postmaster:
            total += sum(int(f) for f in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def run_command(config: Path, url: str, *args: str, prelude: str = "") -> Ran:
    """Run archive-daemon ARGS, timed, with its peak memory and where the CPU went.

    `prelude`: Python statements the process runs first; it imports this checkout's package
    and, after it, the benchmark modules."""
    # The command's own peak is VmHWM: ru_maxrss of an exec'd process keeps the peak of the
    # process it was forked from (this script, which grows with N). Its workers are forked
    # without exec, so their ru_maxrss is theirs.
    child = (f"{prelude}\nimport json, resource, sys; from archive_daemon.cli import main; code = main(sys.argv[1:]); "
             "hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
             "own, readers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN); "
             "print(json.dumps([hwm, readers.ru_maxrss, own.ru_utime + own.ru_stime, "
             "readers.ru_utime + readers.ru_stime]), file=sys.stderr); "
             "sys.exit(code)")
    env = {**os.environ, "ARCHIVE_DATABASE_URL": url, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'benchmarks'}"}
    postgres = postgres_cpu(url)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", child, "--config", str(config), *args],
                            capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    postgres = postgres_cpu(url) - postgres
    if result.returncode != 0:
        raise CommandFailed(f"{args[0]} failed:\n{result.stdout}\n{result.stderr}")
    hwm, readers_kb, cpu_command, cpu_readers = json.loads(result.stderr.strip().splitlines()[-1])
    return Ran(elapsed, max(hwm, readers_kb) / 1024, "\n  ".join(result.stdout.strip().splitlines()),
               cpu_command, cpu_readers, postgres)
