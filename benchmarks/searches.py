"""Searches under load, the same ones two ways: through the API over HTTP, and straight
through psycopg2 by the API's own SQL (api.counts and api.search build it for both), each
with concurrent clients that keep going through errors and count them."""

from __future__ import annotations

import http.client
import json
import math
import random
import threading
import time
import urllib.parse

import falcon.testing
import psycopg2

from archive_daemon import db
from archive_daemon.config import ApiConfig
from api import counts, search
from api.params import Params
from bench import percentile


def places(count: int, seed: int = 7) -> list[tuple[float, float]]:
    """Random places (RA, DEC in degrees) spread evenly over the sky, the same in every run."""
    rng = random.Random(seed)
    return [(rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-0.95, 0.95)))) for _ in range(count)]


def cones(count: int, radius: float, seed: int = 7) -> list[str]:
    """Query strings of cone searches at random places (the same in every run)."""
    return [f"ra={ra:.5f}&dec={dec:.5f}&radius={radius:.5f}" for ra, dec in places(count, seed)]


def radius_for(rows: int, matches: float) -> float:
    """The cone radius (degrees) holding about `matches` of `rows` spread evenly over the sky."""
    return math.degrees(math.acos(1 - 2 * min(1.0, matches / rows)))


class Search:
    """One search as the API runs it for an anonymous caller: its count, then its first page."""

    def __init__(self, query_string: str, settings: ApiConfig = ApiConfig()):
        params = Params(falcon.testing.create_req(query_string=query_string))
        self.query = search.Query(params, settings, [])
        self.limit = settings.default_limit
        self.count_limit = settings.exact_count_limit

    def run(self, cursor) -> tuple[int, bool, int]:
        """(count, exact, rows on the first page)."""
        count, exact = counts.count(cursor, self.query.where, self.query.args, self.count_limit)
        rows = search.page(cursor, self.query, list(search.FIELDS), "obs_start", False, None, self.limit + 1)
        return count, exact, len(rows)


class Load:
    """Latencies of requests made by `clients` threads for `seconds`, and the errors met."""

    def __init__(self):
        self.times: list[float] = []
        self.errors: dict[str, int] = {}
        self.rows: list[int] = []
        self.rate = 0.0
        self._lock = threading.Lock()

    def run(self, worker, items: list, seconds: float, clients: int) -> "Load":
        deadline = time.monotonic() + seconds
        threads = [threading.Thread(target=worker, args=(items[i::clients], deadline)) for i in range(clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.rate = len(self.times) / (time.monotonic() - started)
        return self

    def record(self, times: list[float], rows: list[int], errors: dict[str, int]) -> None:
        with self._lock:
            self.times += times
            self.rows += rows
            for kind, n in errors.items():
                self.errors[kind] = self.errors.get(kind, 0) + n

    def percentile(self, q: float) -> float:
        """Milliseconds."""
        return percentile(self.times, q) * 1000 if self.times else math.nan

    def line(self, label: str) -> str:
        errors = f"   errors: {self.errors}" if self.errors else ""
        rows = f"   {sum(self.rows) / len(self.rows):.0f} rows a search" if self.rows else ""
        return (f"{label}: {self.rate:7.0f} searches/s   p50 {self.percentile(.5):6.1f} ms   "
                f"p99 {self.percentile(.99):6.1f} ms{rows}{errors}")


def bare_sql(url: str, query_strings: list[str], seconds: float, clients: int, pace: float = 0) -> Load:
    """The API's SQL for each search, one connection per client, no HTTP and no Python web layer;
    each client starts a search every `pace` seconds (0: as soon as the last one is answered)."""
    searches = [Search(q) for q in query_strings]
    load = Load()
    dsn = db.libpq_url(url)

    def client(mine: list[Search], deadline: float) -> None:
        times, rows, errors, connection = [], [], {}, None
        wait = _pacer(pace)
        for one in mine:
            if time.monotonic() > deadline:
                break
            wait()
            try:
                connection = connection or psycopg2.connect(dsn)
                start = time.monotonic()
                with connection.cursor() as cursor:
                    _, _, n = one.run(cursor)
                connection.rollback()
                times.append(time.monotonic() - start)
                rows.append(n)
            except psycopg2.Error as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                connection = _closed(connection)
                time.sleep(0.1)
        _closed(connection)
        load.record(times, rows, errors)

    return load.run(client, searches, seconds, clients)


def _pacer(pace: float):
    """A function that sleeps until the next start, `pace` seconds after the previous one
    (at once when behind): below saturation, latency is what a search costs, not queueing."""
    following = time.monotonic() + random.random() * pace  # clients out of step

    def wait() -> None:
        nonlocal following
        now = time.monotonic()
        if following > now:
            time.sleep(following - now)
        following = max(following, now) + pace

    return wait


def _closed(connection) -> None:
    if connection is not None:
        connection.close()
    return None


def through_api(port: int, query_strings: list[str], seconds: float, clients: int, pace: float = 0) -> Load:
    """GET /api/v1/files?QUERY, one keep-alive connection per client, paced as bare_sql."""
    load = Load()

    def client(mine: list[str], deadline: float) -> None:
        times, rows, errors, connection = [], [], {}, None
        wait = _pacer(pace)
        for query in mine:
            if time.monotonic() > deadline:
                break
            wait()
            try:
                connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                start = time.monotonic()
                connection.request("GET", f"/api/v1/files?{query}")
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    errors[f"HTTP {response.status}"] = errors.get(f"HTTP {response.status}", 0) + 1
                    continue
                times.append(time.monotonic() - start)
                rows.append(len(json.loads(body)["results"]))
            except (OSError, http.client.HTTPException) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                connection.close()
                connection = None
                time.sleep(0.1)
        if connection is not None:
            connection.close()
        load.record(times, rows, errors)

    return load.run(client, query_strings, seconds, clients)


def get_json(port: int, path: str, params: dict | None = None) -> tuple[float, dict]:
    """(seconds, answer) of one GET through the API, tried again (up to a minute) while it is
    not ready or errs."""
    query = "?" + urllib.parse.urlencode(params) if params else ""
    deadline = time.monotonic() + 60
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            start = time.monotonic()
            connection.request("GET", path + query)
            response = connection.getresponse()
            body = response.read()
            elapsed = time.monotonic() - start
            if response.status == 200:
                return elapsed, json.loads(body)
            problem = f"HTTP {response.status}: {body[:200]!r}"
        except (OSError, http.client.HTTPException) as exc:
            problem = repr(exc)
        finally:
            connection.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"GET {path}{query}: {problem}")
        time.sleep(1)
