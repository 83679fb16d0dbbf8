"""From a file's close to its row being searchable, through a running `archive-daemon run`.

    .venv/bin/python benchmarks/latency.py [--files 40] [--settle 2] [--interval 1]

Runs the daemon once with inotify and once polling, writes files one at a time into
tonight's directory (a FITS header and some data, written in pieces), and times each from
the writer's close() to the moment a query finds the row. Baseline, measured in the same
run: one INSERT + commit of such a row, the least any design must pay. Targets: inotify
p95 < 2 s; polling p95 <= settle + interval + 1 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archive_daemon import db  # noqa: E402
from bench import fresh_database, percentile, workspace  # noqa: E402
from ingest import templates  # noqa: E402

ARCHIVE = str(Path(sys.executable).with_name("archive-daemon"))


def measure(mode: str, url: str, work: Path, count: int, settle: float, interval: float) -> list[float]:
    root = work / f"root-{mode}"
    night = root / dt.date.today().strftime("%Y-%m/%d") / "cam"
    night.mkdir(parents=True)
    config = work / f"{mode}.yaml"
    config.write_text(f"roots:\n  - name: {mode}\n    path: {root}\n    mode: {mode}\n"
                      f"    settle_seconds: {settle}\n    poll_interval: {interval}\n")
    daemon = subprocess.Popen([ARCHIVE, "--config", str(config), "run"], env={**os.environ, "ARCHIVE_DATABASE_URL": url},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    connection = db.create_engine(url).raw_connection()
    raw, data_size = templates()["shane"]
    rng = random.Random(2)
    latencies = []
    try:
        time.sleep(3)  # start-up and the first reconcile
        for i in range(count):
            path = night / f"r{i:04}.fits"
            with open(path, "wb") as out:
                out.write(raw)
                for _ in range(4):
                    out.write(b"\0" * (data_size // 4))
                    out.flush()
            closed = time.monotonic()
            rel = path.relative_to(root).as_posix()
            while True:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1 FROM files WHERE root = %s AND path = %s", (mode, rel))
                    found = cursor.fetchone()
                connection.commit()
                if found:
                    break
                if time.monotonic() - closed > 60:
                    sys.exit(f"{mode}: {rel} not archived after 60 s")
                time.sleep(0.01)
            latencies.append(time.monotonic() - closed)
            time.sleep(rng.uniform(0, interval))
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        connection.close()
    return latencies


def bare_insert(url: str, count: int) -> list[float]:
    connection = db.create_engine(url).raw_connection()
    raw, _ = templates()["shane"]
    times = []
    with connection.cursor() as cursor:
        for i in range(count):
            start = time.monotonic()
            cursor.execute("INSERT INTO files (root, path, size, mtime, header) VALUES ('bare', %s, 0, now(), %s)",
                           (f"x{i}", raw.decode()))
            connection.commit()
            times.append(time.monotonic() - start)
    connection.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--settle", type=float, default=2.0, help="settle_seconds (default 2)")
    parser.add_argument("--interval", type=float, default=1.0, help="poll_interval (default 1)")
    args = parser.parse_args()
    with workspace(f"{args.files} files per mode; settle {args.settle} s, poll interval {args.interval} s") \
            as (work, devdb):
        url = fresh_database(devdb, "latency")
        base = bare_insert(url, args.files)
        print(f"  baseline, one INSERT + commit: p50 {percentile(base, .5) * 1000:7.1f} ms  "
              f"p95 {percentile(base, .95) * 1000:7.1f} ms")
        bounds = {"inotify": 2.0, "polling": args.settle + args.interval + 1}
        for mode in ("inotify", "polling"):
            values = measure(mode, url, work, args.files, args.settle, args.interval)
            p95 = percentile(values, .95)
            print(f"  {mode:8} close -> searchable: p50 {statistics.median(values):6.2f} s  p95 {p95:6.2f} s  "
                  f"max {max(values):6.2f} s   target p95 < {bounds[mode]:.1f} s: "
                  f"{'met' if p95 < bounds[mode] else 'MISSED'} (p95/target {p95 / bounds[mode]:.2f}, "
                  f"p95/baseline {p95 / percentile(base, .95):.0f})")


if __name__ == "__main__":
    main()
