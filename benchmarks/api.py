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
import http.client
import io
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import fresh_database, workspace  # first: it puts the package on sys.path
from archive_daemon import db
from archive_daemon.store import copy_line
from archive_daemon.visibility import VISIBLE

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


def cones(count: int) -> list[tuple[float, float]]:
    rng = random.Random(7)
    return [(rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-0.95, 0.95)))) for _ in range(count)]


def bare_sql(url: str, seconds: float) -> list[float]:
    connection = db.create_engine(url).raw_connection()
    where = f"f.pos <@ scircle(spoint(radians(%(ra)s), radians(%(dec)s)), radians(%(radius)s)) AND {VISIBLE}"
    times, places = [], cones(100000)
    deadline = time.monotonic() + seconds
    with connection.cursor() as cursor:
        for ra, dec in places:
            start = time.monotonic()
            args = {"ra": ra, "dec": dec, "radius": RADIUS, "principals": []}
            cursor.execute(f"SELECT count(*) FROM files f WHERE {where}", args)
            cursor.fetchone()
            cursor.execute(f"SELECT f.id, f.root, f.path, f.size, f.mtime, f.night, f.instrument, f.telescope, "
                           f"f.object, f.obs_start, f.obs_end, f.exptime, f.frame_type, f.filter, f.program, "
                           f"f.ra, f.dec, f.public_date, f.obs_start, f.id FROM files f WHERE {where} "
                           f"ORDER BY f.obs_start NULLS LAST, f.id LIMIT 101", args)
            cursor.fetchall()
            connection.commit()
            times.append(time.monotonic() - start)
            if time.monotonic() > deadline:
                break
    connection.close()
    return times


def through_api(port: int, seconds: float, clients: int) -> tuple[list[float], float]:
    places = cones(100000)
    times: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    rows = []

    def client(offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for ra, dec in places[offset::clients]:
            start = time.monotonic()
            connection.request("GET", f"/api/v1/files?ra={ra:.5f}&dec={dec:.5f}&radius={RADIUS}")
            response = connection.getresponse()
            body = response.read()
            mine.append(time.monotonic() - start)
            if len(rows) < 200:
                rows.append(len(json.loads(body)["results"]))
            if time.monotonic() > deadline:
                break
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    print(f"  (about {statistics.mean(rows):.0f} rows a search)")
    return times, len(times) / elapsed


def report(label: str, times: list[float], rate: float) -> None:
    ordered = sorted(times)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    print(f"  {label}: {rate:7.0f} requests/s   p50 {p(.5):6.1f} ms   p99 {p(.99):6.1f} ms")


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
        a = bare_sql(url, args.seconds)
        report("(a) bare SQL, psycopg2 loop  ", a, len(a) / sum(a))
        server = ApiServer(config_path, url, work / "gunicorn.log")
        try:
            b, rate = through_api(server.port, args.seconds, args.clients)
            report(f"(b) API, {args.clients} clients, gunicorn", b, rate)
            print(f"  ratio b/a = {rate / (len(a) / sum(a)):.2f} (target >= 0.33)")
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
