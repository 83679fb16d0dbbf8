"""TAP against the JSON API and against the SQL TAP runs, for the same cones, in one run on this machine.

    .venv/bin/python benchmarks/tap.py [--rows 1000000] [--seconds 20] [--clients 8]

N synthetic rows (benchmarks/api.py's: the whole sky, ten years, about 5% proprietary) in a
database migrated to head. For the same random cones of 1 arcmin, as an anonymous caller:
  (a) bare SQL: the statement TAP runs for each cone (api.ivoa.query.statement), executed as
      the ADQL role through session.published, from concurrent threads: the limit;
  (b) the JSON API, GET /api/v1/files?ra=&dec=&radius=, concurrent clients;
  (c) TAP, GET /ivoa/tap/sync with the ADQL cone, concurrent clients, then one client alone;
  (d) TAP, a time range (t_min within one hour), one client alone.
Then the plans PostgreSQL chose for the TAP cone and time range (EXPLAIN ANALYZE as the ADQL role).
Target: one TAP cone of 1 arcmin on 1M rows answers end to end in under 50 ms (p99 of (c) alone).
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import itertools
import json
import math
import os
import random
import re
import statistics
import threading
import time
import traceback
from pathlib import Path
from urllib.parse import quote

from bench import fresh_database, workspace  # first: it puts the package on sys.path
from archive_daemon import db
from archive_daemon.config import IvoaConfig

from api.ivoa import query
from api.ivoa.session import published

import searches


def _sibling(name: str):
    """benchmarks/NAME.py as a module. benchmarks/api.py cannot be imported by its name: `api`
    is the API's package, which this script needs too."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


api_bench = _sibling("api")
ApiServer = api_bench.ApiServer

RADIUS = 1 / 60  # degrees: the cone of 1 arcmin
CONE = ("SELECT obs_id, s_ra, s_dec, t_min, access_url FROM ivoa.obscore "
        "WHERE 1=CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {ra:.5f}, {dec:.5f}, 0.0167))")
HOUR = ("SELECT obs_id, s_ra, s_dec, t_min, access_url FROM ivoa.obscore "
        "WHERE t_min BETWEEN {start:.6f} AND {end:.6f}")
SETTINGS = IvoaConfig()  # the service's defaults: the MAXREC and timeout TAP uses
WARM_UP = 5.0  # seconds of each workload before it is measured
HTTP_ERRORS = (OSError, http.client.HTTPException)


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def hours(count: int) -> list[tuple[float, float]]:
    """Random hours (MJD) among the last ten years, where load_rows puts the observations."""
    rng = random.Random(11)
    today = time.time() / 86400 + 40587  # MJD
    starts = [today - rng.uniform(1, 10 * 365) for _ in range(count)]
    return [(start, start + 1 / 24) for start in starts]


def tap_path(adql: str) -> str:
    return "/ivoa/tap/sync?LANG=ADQL&QUERY=" + quote(adql)


def json_path(ra: float, dec: float) -> str:
    return f"/api/v1/files?ra={ra:.5f}&dec={dec:.5f}&radius={RADIUS:.5f}"


def votable_rows(body: bytes) -> int:
    return body.count(b"<TR>")


def json_rows(body: bytes) -> int:
    return len(json.loads(body)["results"])


class Run:
    """One measured workload: each request's seconds, the rows it returned, what failed."""

    def __init__(self):
        self.times: list[float] = []
        self.rows: list[int] = []
        self.errors: list[str] = []
        self.elapsed = 0.0
        self.lock = threading.Lock()

    def add(self, times: list[float], rows: list[int], errors: list[str]) -> None:
        with self.lock:
            self.times += times
            self.rows += rows
            self.errors += errors

    @property
    def rate(self) -> float:
        return len(self.times) / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.times)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    def report(self, label: str) -> None:
        rows = f"{statistics.mean(self.rows):.2f}" if self.rows else "-"
        failed = f"; {len(self.errors)} failed, first: {self.errors[0]}" if self.errors else ""
        print(f"  {label:<34} {self.rate:7.1f} requests/s   p50 {self.percentile(.5):6.1f} ms   "
              f"p99 {self.percentile(.99):6.1f} ms   {len(self.times):6} requests, {rows} rows each   "
              f"({load()}){failed}", flush=True)


def concurrently(work, items: list, clients: int, seconds: float) -> Run:
    """Run `work.request(state, item)` -> rows from `clients` threads (client i takes items i,
    i+clients, ..., round again when they run out) until `seconds` have passed; a failed request
    is recorded, never fatal. `work.open()` gives each thread its state, `work.close(state)` ends it."""
    run = Run()
    deadline = time.monotonic() + seconds

    def client(offset: int) -> None:
        times, rows, errors = [], [], []
        state = None
        try:
            for item in itertools.cycle(items[offset::clients]):
                if time.monotonic() > deadline:
                    break
                start = time.monotonic()
                try:
                    if state is None:
                        state = work.open()
                    count = work.request(state, item)
                except Exception as exc:  # recorded with the run: one failure does not end it
                    errors.append(f"{type(exc).__name__}: {str(exc).strip()[:200]}")
                    work.close(state)
                    state = None
                    continue
                times.append(time.monotonic() - start)
                rows.append(count)
        finally:
            work.close(state)
            run.add(times, rows, errors)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.elapsed = time.monotonic() - started
    return run


class Http:
    """GET requests on one keep-alive connection a client; anything but 200 is a failure."""

    def __init__(self, port: int, rows):
        self.port, self.rows = port, rows

    def open(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def request(self, connection: http.client.HTTPConnection, path: str) -> int:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:300]!r}")
        return self.rows(body)

    def close(self, connection) -> None:
        if connection is not None:
            connection.close()


class Sql:
    """Statements run as TAP runs them: as the ADQL role, through session.published."""

    def __init__(self, url: str, base_url: str):
        self.engine = db.create_engine(url)
        self.base_url = base_url

    def open(self):
        return self.engine.raw_connection()

    def request(self, connection, sql: str) -> int:
        with published(connection, [], base_url=self.base_url, authority=SETTINGS.authority,
                       timeout=SETTINGS.sync_timeout) as cursor:
            cursor.execute(sql)
            return len(cursor.fetchall())

    def close(self, connection) -> None:
        if connection is not None:
            connection.close()


def measure(label: str, work, items: list, clients: int, seconds: float) -> Run | None:
    """Warm up, then measure; a workload that cannot run is reported, and the others still run."""
    try:
        concurrently(work, items[::-1], clients, min(WARM_UP, seconds))
        run = concurrently(work, items, clients, seconds)
    except Exception:
        print(f"  {label}: could not run:\n{traceback.format_exc()}", flush=True)
        return None
    run.report(label)
    return run


def start_server(config: Path, url: str, log: Path, attempts: int = 3) -> ApiServer:
    """gunicorn, answering its health check; a start that fails is tried again."""
    for attempt in range(1, attempts + 1):
        try:
            return ApiServer(config, url, log)
        except RuntimeError as exc:
            if attempt == attempts:
                raise
            print(f"  gunicorn did not start (attempt {attempt}): {str(exc).splitlines()[0]}; again", flush=True)


def wait_for_tap(port: int, adql: str, seconds: float = 120) -> None:
    """Until a TAP query answers 200: the first ones load the ADQL parser and the catalog in
    each worker, and may find a cold database."""
    work = Http(port, votable_rows)
    deadline = time.monotonic() + seconds
    while True:
        connection = work.open()
        try:
            work.request(connection, tap_path(adql))
            return
        except (*HTTP_ERRORS, RuntimeError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"TAP did not answer within {seconds:g} s: {exc}") from None
            time.sleep(0.5)
        finally:
            connection.close()


def statements(url: str, adql: list[str]) -> list[str]:
    """The SQL the TAP service runs for each ADQL query, at its default MAXREC."""
    connection = db.create_engine(url).raw_connection()
    try:
        return [query.statement(connection, text, SETTINGS.default_maxrec) for text in adql]
    finally:
        connection.close()


def explain(url: str, base_url: str, label: str, sql: str, index: str) -> None:
    connection = db.create_engine(url).raw_connection()
    try:
        with published(connection, [], base_url=base_url, authority=SETTINGS.authority,
                       timeout=SETTINGS.sync_timeout) as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plan = [line for line, in cursor.fetchall()]
    except Exception as exc:
        print(f"  EXPLAIN of the {label} failed: {exc}", flush=True)
        return
    finally:
        connection.close()
    used = any(re.search(rf"\b{index}\b", line) for line in plan)
    print(f"\n  {label}: index {index} {'used' if used else 'NOT USED'}\n  SQL: {' '.join(sql.split())}")
    print("\n".join("    " + line for line in plan), flush=True)


def ratio(top: Run | None, bottom: Run | None) -> str:
    return f"{top.rate / bottom.rate:.2f}" if top and bottom and bottom.rate else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=20, help="of each measured workload")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    print(f"start: {load()}", flush=True)
    with workspace("tap") as (work, devdb):
        url = fresh_database(devdb, "tap")
        root = work / "data"
        root.mkdir()
        started = time.monotonic()
        api_bench.load_rows(url, args.rows, root)
        print(f"  loaded in {time.monotonic() - started:.0f} s ({load()})", flush=True)
        config_path = work / "config.yaml"
        config_path.write_text(f"roots:\n  - name: bench\n    path: {root}\n")
        places = searches.places(20000)
        cone_adql = [CONE.format(ra=ra, dec=dec) for ra, dec in places]
        hour_adql = [HOUR.format(start=start, end=end) for start, end in hours(5000)]
        server = start_server(config_path, url, work / "gunicorn.log")
        try:
            base_url = server.base
            cone_sql = statements(url, cone_adql)
            wait_for_tap(server.port, cone_adql[0])
            print(f"\n{args.clients} concurrent clients, the same {RADIUS * 60:g}-arcmin cones "
                  f"(expected rows a cone: {args.rows * (1 - math.cos(math.radians(RADIUS))) / 2:.4f}):", flush=True)
            sql = measure("(a) bare SQL (TAP's, ADQL role)", Sql(url, base_url), cone_sql, args.clients, args.seconds)
            api = measure("(b) JSON API /api/v1/files", Http(server.port, json_rows),
                          [json_path(ra, dec) for ra, dec in places], args.clients, args.seconds)
            tap_paths = [tap_path(text) for text in cone_adql]
            tap = measure("(c) TAP sync cone", Http(server.port, votable_rows), tap_paths, args.clients, args.seconds)
            print(f"  ratio TAP/bare SQL = {ratio(tap, sql)}   TAP/JSON API = {ratio(tap, api)}   "
                  f"JSON API/bare SQL = {ratio(api, sql)}")
            print("\none client alone (end to end, per request):", flush=True)
            alone = measure("(c) TAP sync cone", Http(server.port, votable_rows), tap_paths, 1, args.seconds)
            measure("(d) TAP sync time range (1 hour)", Http(server.port, votable_rows),
                    [tap_path(text) for text in hour_adql], 1, args.seconds)
            if alone and alone.times:
                p99 = alone.percentile(.99)
                print(f"  TAP cone p99 alone {p99:.1f} ms: target < 50 ms {'met' if p99 < 50 else 'NOT MET'}")
            print("\nplans, as the ADQL role (anonymous):", flush=True)
            explain(url, base_url, "TAP cone", cone_sql[0], "files_pos")
            explain(url, base_url, "TAP time range", statements(url, hour_adql[:1])[0], "files_t_min")
        finally:
            server.stop()
    print(f"end: {load()}")


if __name__ == "__main__":
    main()
