"""Reconcile speed and memory on a large unchanged tree, measured in one run on this machine.

    .venv/bin/python benchmarks/reconcile.py --files 100000 --files 1000000

For each N it writes N empty files in a realistic night/instrument tree (600 files a night
over three instruments), bulk-loads their rows, and measures:
  (a) the floor: a bare os.scandir walk that stats every file, no database;
  (b) `archive-daemon reconcile` as a whole process: walk, streamed merge with the rows,
      nothing to load; with its peak memory;
  (c) the peer baseline: one existence query per file (on a sample; per-file cost does not
      depend on N).
Target: (b) under 60 s with under 500 MB for a million files on 2 cores.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archive_daemon import db  # noqa: E402
from archive_daemon.store import mtime_of  # noqa: E402
from archive_daemon.watcher import ScanProblems, name_filter, scan  # noqa: E402
from bench import fresh_database, run_command, tree_sizes, workspace  # noqa: E402

PER_NIGHT = 600
INSTRUMENTS = ("shane", "nickel", "AO")
SAMPLE = 20000


def make_tree(root: Path, n: int) -> None:
    for i in range(0, n, PER_NIGHT // len(INSTRUMENTS)):
        night = i // PER_NIGHT
        day = time.gmtime(1262304000 + night * 86400)
        directory = root / time.strftime("%Y-%m/%d", day) / INSTRUMENTS[(i // (PER_NIGHT // 3)) % 3]
        directory.mkdir(parents=True, exist_ok=True)
        for j in range(i, min(i + PER_NIGHT // len(INSTRUMENTS), n)):
            os.close(os.open(directory / f"r{j:07}.fits", os.O_CREAT | os.O_WRONLY, 0o644))


def entries(root: Path):
    return scan(str(root), "", name_filter(["*.fits"], []), name_filter(["*"], []), ScanProblems())


def bulk_load(url: str, root: Path) -> int:
    """Rows for every file, as if ingested, written with one COPY."""
    connection = db.create_engine(url).raw_connection()
    buffer = io.StringIO()
    count = 0
    for entry in entries(root):
        buffer.write(f"bench\t{entry.path}\t{entry.size}\t{mtime_of(entry.mtime_us)}\t\n")
        count += 1
    buffer.seek(0)
    with connection.cursor() as cursor:
        cursor.copy_expert("COPY files (root, path, size, mtime, header) FROM STDIN", buffer)
        cursor.execute("ANALYZE files")
    connection.commit()
    connection.close()
    return count


def bare_walk(root: Path) -> float:
    start = time.perf_counter()
    count = sum(1 for _ in entries(root))
    return count / (time.perf_counter() - start)


def peer_baseline(url: str, root: Path, paths: list[str]) -> float:
    connection = db.create_engine(url).raw_connection()
    cursor = connection.cursor()
    start = time.perf_counter()
    for path in paths:
        st = os.stat(root / path)
        cursor.execute("SELECT size, mtime FROM files WHERE root = %s AND path = %s", ("bench", path))
        cursor.fetchone()
        del st
    rate = len(paths) / (time.perf_counter() - start)
    connection.close()
    return rate


def main() -> None:
    with workspace("reconcile") as (work, devdb):
        for n in tree_sizes(__doc__, 100000):
            root = work / f"tree{n}"
            started = time.perf_counter()
            make_tree(root, n)
            url = fresh_database(devdb, f"rec{n}")
            loaded = bulk_load(url, root)
            print(f"\n== {n} files, {loaded} rows ({time.perf_counter() - started:.0f} s to prepare)")
            config = work / f"config{n}.yaml"
            config.write_text(f"roots:\n  - name: bench\n    path: {root}\n")
            a = bare_walk(root)
            ran = run_command(config, url, "reconcile")
            elapsed, peak, line = ran.elapsed, ran.peak_mb, ran.summary
            paths = random.Random(1).sample([e.path for e in entries(root)], min(SAMPLE, n))
            c = peer_baseline(url, root, paths)
            b = n / elapsed
            print(f"  {line}")
            print(f"  (a) bare scandir walk with stat, no database: {a:9.0f} files/s")
            print(f"  (b) archive-daemon reconcile, whole process:  {b:9.0f} files/s  "
                  f"{elapsed:.1f} s  peak {peak:.0f} MB")
            print(f"  (c) peer baseline, one query per file:        {c:9.0f} files/s  "
                  f"(would take {n / c:.0f} s)")
            print(f"  ratios: b/a = {b / a:.2f}   b/c = {b / c:.1f}")
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
