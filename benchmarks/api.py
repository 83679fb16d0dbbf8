"""API speed against the bare database and against cat/tar, measured in one run on this machine.

    .venv/bin/python benchmarks/api.py [--rows 1000000] [--seconds 20] [--clients 8]
                                       [--download-gb 1] [--tar-gb 5]

Searches: N synthetic rows (the whole sky, ten years, about 5% proprietary), cone searches
returning about 50 rows at random places:
  (a) the API's SQL (count + page) straight through psycopg2 in a loop: the limit;
  (b) GET /api/v1/files through gunicorn on loopback, with concurrent clients.
Downloads: one large file through the API against `cat FILE > /dev/null` (the page cache
read alone) and `cat FILE | cat > /dev/null` (the bytes handed to another process, as a
download must), and a tar stream
of several files against `tar cf - FILES | cat > /dev/null` (piped: GNU tar skips reading
files when it writes to /dev/null itself), with the gunicorn workers' peak memory.
Targets: (b) >= 1/3 of (a) in requests/s, p99 < 50 ms; download >= 80% of cat; tar >= 60%
of tar, under 150 MB a worker.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from bench import fresh_database, workspace  # first: it puts the package on sys.path
from archive_daemon import db
from archive_daemon.store import copy_line
from searches import bare_sql, cones, through_api

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from apiserver import ApiServer  # noqa: E402
from daemonproc import children  # noqa: E402

RADIUS = 0.8  # degrees: about 50 of a million rows spread over the sky


def load_rows(url: str, n: int, root: Path) -> None:
    rng = random.Random(5)
    now = time.time()
    lines = []
    for i in range(n):
        ra, dec = rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1)))
        obs = now - rng.random() * 10 * 365 * 86400
        public = obs + (365 * 86400 if rng.random() < 0.5 else 0)  # ~5% end up in the future
        lines.append(copy_line(("bench", f"sky/r{i:07}.fits", 2880, _ts(obs), _ts(obs), ra, dec,
                                f"({ra!r}d,{dec!r}d)", _ts(public), f"obj {i}", "{}", "")))
    connection = db.create_engine(url).raw_connection()
    with connection.cursor() as cursor:
        cursor.copy_expert("COPY files (root, path, size, mtime, obs_start, ra, dec, pos, public_date, object, "
                           "grants, header) FROM STDIN", io.StringIO("".join(lines)))
        cursor.execute("ANALYZE files")
        cursor.execute("SELECT round(100.0 * count(*) FILTER (WHERE public_date > now()) / count(*), 1) FROM files")
        print(f"  {n} rows, {cursor.fetchone()[0]}% proprietary")
    connection.commit()
    connection.close()


def _ts(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(epoch))


def timed(command: list[str] | str) -> float:
    start = time.perf_counter()
    subprocess.run(command, shell=isinstance(command, str), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def worker_peak_mb(server: ApiServer) -> float:
    peaks = []
    for pid in children(server.process.pid):
        status = Path(f"/proc/{pid}/status").read_text()
        peaks += [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")]
    return max(peaks) / 1024


def make_file(path: Path, gigabytes: float) -> int:
    block = os.urandom(1 << 20)
    with open(path, "wb") as out:
        for _ in range(int(gigabytes * 1024)):
            out.write(block)
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--download-gb", type=float, default=1)
    parser.add_argument("--tar-gb", type=float, default=5)
    args = parser.parse_args()
    with workspace("api") as (work, devdb):
        url = fresh_database(devdb, "api")
        root = work / "data"
        (root / "big").mkdir(parents=True)
        load_rows(url, args.rows, root)
        config_path = work / "config.yaml"
        config_path.write_text(f"roots:\n  - name: bench\n    path: {root}\n")
        places = cones(100000, RADIUS)
        a = bare_sql(url, places, args.seconds, clients=1)
        print("  " + a.line("(a) bare SQL, psycopg2 loop  "))
        server = ApiServer(config_path, url, work / "gunicorn.log")
        try:
            b = through_api(server.port, places, args.seconds, args.clients)
            print("  " + b.line(f"(b) API, {args.clients} clients, gunicorn"))
            print(f"  ratio b/a = {b.rate / a.rate:.2f} (target >= 0.33)")
            downloads(url, root, server, args.download_gb, args.tar_gb)
        finally:
            server.stop()


def downloads(url: str, root: Path, server: ApiServer, download_gb: float, tar_gb: float) -> None:
    single = root / "big" / "single.fits"
    size = make_file(single, download_gb)
    parts = max(1, int(tar_gb))
    members = [root / "big" / f"part{i}.fits" for i in range(parts)]
    for member in members:
        make_file(member, tar_gb / parts)
    connection = db.create_engine(url).raw_connection()
    with connection.cursor() as cursor:
        for path in [single, *members]:
            cursor.execute("INSERT INTO files (root, path, size, mtime, public_date, header) "
                           "VALUES ('bench', %s, %s, now(), '1970-01-01', '') RETURNING id",
                           (path.relative_to(root).as_posix(), path.stat().st_size))
        cursor.execute("SELECT id, path FROM files WHERE path LIKE 'big/%%'")
        ids = dict((p, i) for i, p in cursor.fetchall())
    connection.commit()
    connection.close()
    cat = timed(["cat", str(single)])
    piped = timed(f"cat {single} | cat > /dev/null")
    api = timed(f"curl -s -o /dev/null {server.base}/api/v1/files/{ids['big/single.fits']}/download")
    print(f"  download of {size / 2**30:.1f} GiB: API {size / api / 2**20:6.0f} MiB/s; `cat > /dev/null` "
          f"{size / cat / 2**20:6.0f} MiB/s ({cat / api:.0%}), `cat | cat > /dev/null` {size / piped / 2**20:6.0f} "
          f"MiB/s ({piped / api:.0%}) (target >= 80%)")
    total = sum(m.stat().st_size for m in members)
    # Through a pipe: GNU tar writing straight to /dev/null notices, and skips reading the files.
    tar = timed(f"tar cf - -C {root} {' '.join(m.relative_to(root).as_posix() for m in members)} | cat > /dev/null")
    body = json.dumps({"ids": [ids[m.relative_to(root).as_posix()] for m in members]})
    api_tar = timed(f"curl -s -o /dev/null -H 'Content-Type: application/json' -d '{body}' {server.base}/api/v1/download")
    print(f"  tar stream of {total / 2**30:.1f} GiB: tar {total / tar / 2**20:6.0f} MiB/s, API "
          f"{total / api_tar / 2**20:6.0f} MiB/s = {tar / api_tar:.0%} of tar (target >= 60%); "
          f"worker peak {worker_peak_mb(server):.0f} MB (target < 150)")


if __name__ == "__main__":
    main()
