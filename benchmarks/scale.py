"""Ten million files on one machine: searches and counts, sizes, reconcile, access recompute
and bulk ingest, each against a baseline measured in the same run.

    .venv/bin/python benchmarks/scale.py [--rows 10000000] [--only PART,...] [--seconds 20]
                                         [--clients 8] [--ingest-files 20000]

Builds the synthetic archive of benchmarks/synthetic.py (twenty years, two roots, about 5%
proprietary, small headers) with COPY, its indexes afterwards, then VACUUM ANALYZE, in a
PostgreSQL of its own tuned as the README advises. Parts, in this order (--only chooses):

  sizes      the table, its TOAST and each index per million rows; and what real headers
             (150-210 cards, lz4) add per million, measured on a side table.
  cone       cone searches of about 50 files at random places for --seconds: the API through
             gunicorn with --clients client threads, against the API's own SQL through
             psycopg2 with as many threads; back to back (throughput), then each client
             paced at half the API's saturated rate (latency). Targets: >= 1/3 of the
             bare-SQL throughput, API p99 < 50 ms.
  broad      a whole year, one instrument, an object prefix, and everything: the first page
             through the API (target < 200 ms each) with its count, against the exact count
             every page paid for before (count(*) and the page, bare SQL); the facets of each.
  plans      EXPLAIN (ANALYZE, BUFFERS) of every statement of a cone and of those searches.
  reconcile  `archive-daemon reconcile` of every row, unchanged, as a whole process, the walk
             of the disk replaced by the archive's listing (a generator of the same entries in
             the same order: ten million real files would not fit on this disk); against the
             listing alone and the rows alone; a real walk's cost per file is measured on a
             small real tree and added for the projection. Targets: < 2 min, < 1 GB.
  recompute  access recompute of the nickel root (a tenth of the rows) after its proprietary
             period changes, against deciding and updating one file at a time; then an
             override file in one night directory, and how many rows changed. Target: 1M
             files in < 60 s.
  ingest     `archive-daemon ingest` of --ingest-files real-looking files as a whole process
             (start-up included), against plain header reading with one loop per core
             (target >= 70%); and the same ingest into the loaded archive, whose rate is the
             time to rebuild the archive from its disks.

Every part says the machine's load when it starts (other work shares the cores: the ratios
are what to compare); a part that fails is reported and the others still run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import io
import os
import resource
import shutil
import statistics
import sys
import time
import traceback
import urllib.parse
from pathlib import Path

from bench import REPO, fresh_database, postgres_cpu, run_command, workspace  # first: it puts the package on sys.path
import psycopg2
import yaml

from access import one_by_one
from archive_daemon import db, store
from archive_daemon.access import Rules, Schedule
from archive_daemon.config import load_config
from archive_daemon.recompute import decide_directory, recompute
from ingest import header_reading_limit, make_tree as make_fits_tree, templates
from reconcile import bare_walk, make_tree as make_empty_tree
from searches import Search, bare_sql, cones, get_json, radius_for, through_api
from synthetic import Archive, load, without_indexes

sys.path.insert(0, str(REPO / "tests"))
from apiserver import ApiServer  # noqa: E402

PARTS = ("sizes", "cone", "broad", "plans", "reconcile", "recompute", "ingest")
# The README's advice for a machine like this one (24 GiB), applied before loading.
SETTINGS = {"shared_buffers": "4GB", "effective_cache_size": "16GB", "work_mem": "16MB",
            "maintenance_work_mem": "1GB", "random_page_cost": "1.1", "max_wal_size": "8GB",
            "checkpoint_timeout": "15min"}
REAL_WALK_FILES = 100_000
MILLION = 1_000_000


@dataclasses.dataclass
class Run:
    """What the parts share: the archive, its database and configuration, and the API."""

    args: argparse.Namespace
    work: Path
    devdb: object
    archive: Archive | None = None
    url: str | None = None
    config_path: Path | None = None
    server: ApiServer | None = None

    def api(self) -> ApiServer:
        """The API on the archive, started on first use (tried again if it does not come up)."""
        for attempt in range(3):
            if self.server is not None:
                return self.server
            try:
                self.server = ApiServer(self.config_path, self.url, self.work / "gunicorn.log")
            except RuntimeError as exc:
                print(f"  the API did not start (attempt {attempt + 1}): {str(exc).splitlines()[0]}")
        raise RuntimeError("the API did not start three times: see gunicorn.log")

    def connect(self):
        return psycopg2.connect(db.libpq_url(self.url))

    def sql(self, statement: str, args=None) -> list[tuple]:
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement, args)
                rows = cursor.fetchall() if cursor.description else []
            connection.commit()
            return rows
        finally:
            connection.close()


def load_note() -> str:
    return "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def tune(devdb) -> None:
    connection = psycopg2.connect(db.libpq_url(devdb.url()))
    connection.autocommit = True
    with connection.cursor() as cursor:
        for name, value in SETTINGS.items():
            cursor.execute(f"ALTER SYSTEM SET {name} = %s", (value,))
    connection.close()
    devdb.stop()
    devdb.start()
    print("PostgreSQL settings: " + ", ".join(f"{k}={v}" for k, v in SETTINGS.items()))


def build(run: Run) -> None:
    roots = {name: run.work / "roots" / name for name in ("shane", "nickel")}
    run.archive = archive = Archive(run.args.rows, roots)
    started = time.perf_counter()
    archive.make_directories()
    run.url = fresh_database(run.devdb, "scale")
    run.config_path = run.work / "config.yaml"
    run.config_path.write_text(yaml.safe_dump({"roots": [{"name": n, "path": str(p)} for n, p in roots.items()]}))
    config = load_config(str(run.config_path))
    with without_indexes(run.url):
        load(run.url, archive, Rules(config.access, Schedule(), config.keywords.frame_type_of))
        loaded = time.perf_counter()
    indexed = time.perf_counter()
    connection = run.connect()
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) files")
    connection.close()
    proprietary, = run.sql("SELECT round(100.0 * count(*) FILTER (WHERE public_date > now() OR public_date IS NULL)"
                           " / count(*), 1) FROM files")[0]
    print(f"\n== {archive.n} rows, {proprietary}% proprietary ({load_note()})")
    print(f"  COPY (rows made by 2 processes) {loaded - started:.0f} s, indexes built after {indexed - loaded:.0f} s, "
          f"VACUUM ANALYZE {time.perf_counter() - indexed:.0f} s")


def part_sizes(run: Run) -> None:
    per = MILLION / run.archive.n
    rows = run.sql("""
        SELECT 'table (heap)', pg_relation_size('files')
        UNION ALL SELECT 'TOAST', pg_total_relation_size('files') - pg_relation_size('files') - pg_indexes_size('files')
        UNION ALL SELECT 'all indexes', pg_indexes_size('files')
        UNION ALL SELECT 'total', pg_total_relation_size('files')
        UNION ALL (SELECT '  ' || indexrelid::regclass::text, pg_relation_size(indexrelid)
                   FROM pg_index WHERE indrelid = 'files'::regclass ORDER BY 2 DESC)""")
    for name, size in rows:
        print(f"  {name:<28} {size / 2**30:8.2f} GiB   {size * per / 2**20:8.0f} MiB per million rows")
    header = _real_header_bytes(run)
    print(f"  real headers (150-210 cards), lz4 in TOAST: {header:.0f} bytes a file = "
          f"{header * MILLION / 2**20:.0f} MiB per million rows, on top of the table above "
          f"(whose synthetic headers are one card)")


def _real_header_bytes(run: Run, count: int = 20000) -> float:
    """Bytes per row of real headers stored as the files table stores them, each compressed
    on its own (OBJECT and DATE-OBS differ from file to file)."""
    raws = [raw.decode("ascii") for raw, _ in templates().values()]
    connection = run.connect()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE header_cost (header text COMPRESSION lz4 NOT NULL)")
        lines = []
        for i in range(count):
            text = raws[i % len(raws)]
            at = text.find("OBJECT  = ")
            text = text[:at] + f"OBJECT  = 'target {i:<10}'".ljust(80) + text[at + 80:] if at >= 0 else text
            lines.append(store.copy_line((text,)))
        cursor.copy_expert("COPY header_cost FROM STDIN", io.StringIO("".join(lines)))
        cursor.execute("SELECT pg_total_relation_size('header_cost')")
        size = cursor.fetchone()[0]
        cursor.execute("DROP TABLE header_cost")
    connection.commit()
    connection.close()
    return size / count


def part_cone(run: Run) -> None:
    radius = radius_for(run.archive.n, 50)
    clients, seconds = run.args.clients, run.args.seconds
    server = run.api()
    print(f"  radius {radius:.3f} degrees; warming up both paths for 5 s each")
    bare_sql(run.url, cones(20000, radius, seed=8), 5, clients)
    through_api(server.port, cones(20000, radius, seed=8), 5, clients)
    places = cones(100000, radius)
    a = bare_sql(run.url, places, seconds, clients)
    print("  " + a.line(f"(a) bare SQL, {clients} threads back to back     "))
    b = through_api(server.port, places, seconds, clients)
    print("  " + b.line(f"(b) API, {clients} clients back to back        "))
    print(f"  throughput ratio b/a = {b.rate / a.rate:.2f} (target >= 0.33)")
    # Back to back, eight clients keep two cores saturated, and the latency is mostly queueing
    # (the client threads' own included): the latency target is read at half that load.
    pace = clients / (b.rate / 2)
    c = bare_sql(run.url, places, seconds, clients, pace)
    print("  " + c.line(f"(c) bare SQL, {clients} threads at half of (b)'s rate"))
    d = through_api(server.port, places, seconds, clients, pace)
    print("  " + d.line(f"(d) API, {clients} clients at half of (b)'s rate  "))
    print(f"  API p99 at half load {d.percentile(.99):.1f} ms (target < 50), saturated {b.percentile(.99):.1f} ms; "
          f"bare SQL p99 {c.percentile(.99):.1f} ms and {a.percentile(.99):.1f} ms")


def broad_searches(archive: Archive) -> dict[str, dict]:
    year = archive.last_night.year - 10
    return {"a whole year": {"start": f"{year}-01-01", "end": f"{year + 1}-01-01"},
            "one instrument": {"instrument": "kast"}, "an object prefix": {"object": "NGC 1", "object_match": "prefix"},
            "everything": {}}


def part_broad(run: Run) -> None:
    server = run.api()
    connection = run.connect()
    for label, params in broad_searches(run.archive).items():
        query = urllib.parse.urlencode(params)
        get_json(server.port, "/api/v1/files", params)  # the first of a kind plans and warms up
        times, answer = [], None
        for _ in range(5):
            elapsed, answer = get_json(server.port, "/api/v1/files", params)
            times.append(elapsed * 1000)
        facets_ms, facets = get_json(server.port, "/api/v1/facets", params)
        exact_facets = all(v["count_exact"] for values in facets.values() for v in values)
        search = Search(query)
        with connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(f"SELECT count(*) FROM files f WHERE {search.query.where}", search.query.args)
            exact = cursor.fetchone()[0]
            search.run(cursor)
            before = (time.perf_counter() - started) * 1000
        connection.rollback()
        error = f"{(answer['count'] - exact) / exact:+.1%}" if exact else "-"
        print(f"  {label} ({query or 'no filter'}):")
        print(f"    API first page: median {statistics.median(times):6.1f} ms, max {max(times):6.1f} ms "
              f"(target < 200)   count {answer['count']:,} ({'exact' if answer['count_exact'] else 'estimated'}; "
              f"exactly {exact:,}: {error})")
        print(f"    before (exact count(*) + page, bare SQL): {before:7.1f} ms   ratio before/API "
              f"{before / statistics.median(times):.1f}   facets {facets_ms * 1000:.0f} ms "
              f"({'exact' if exact_facets else 'estimated'})")
    connection.close()


class Explaining:
    """A cursor that shows each statement's plan (EXPLAIN ANALYZE, BUFFERS), then runs it."""

    def __init__(self, cursor):
        self.cursor = cursor

    def execute(self, statement: str, args=None) -> None:
        self.cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, args)
        print("    " + " ".join(statement.split())[:160])
        print("\n".join("      " + row[0] for row in self.cursor.fetchall()))
        self.cursor.execute(statement, args)

    def fetchone(self):
        return self.cursor.fetchone()

    def fetchall(self):
        return self.cursor.fetchall()


def part_plans(run: Run) -> None:
    searches = {"a cone": cones(1, radius_for(run.archive.n, 50))[0],
                **{label: urllib.parse.urlencode(params) for label, params in broad_searches(run.archive).items()}}
    connection = run.connect()
    for label, query in searches.items():
        print(f"  -- {label} ({query or 'no filter'})")
        with connection.cursor() as cursor:
            Search(query).run(Explaining(cursor))
        connection.rollback()
    connection.close()


def part_reconcile(run: Run) -> None:
    archive, n = run.archive, run.archive.n
    started = time.perf_counter()
    listed = sum(1 for root in archive.roots for _ in archive.listing(root))
    listing = time.perf_counter() - started
    connection = run.connect()
    started = time.perf_counter()
    rows = sum(1 for root in archive.roots for _ in store.known_entries(connection, root, ""))
    reading = time.perf_counter() - started
    connection.close()
    # The child process replaces the scan of the disk with the listing, for every root.
    prelude = (f"import datetime, pathlib, synthetic; from archive_daemon import loader\n"
               f"archive = synthetic.Archive({n}, {{n: pathlib.Path(p) for n, p in {_paths(archive)!r}.items()}}, "
               f"datetime.date.fromisoformat({archive.last_night.isoformat()!r}))\n"
               f"names = {{p: n for n, p in {_paths(archive)!r}.items()}}\n"
               f"loader.scan = lambda root, prefix, *rest, **options: archive.listing(names[root])")
    ran = run_command(run.config_path, run.url, "reconcile", prelude=prelude)
    elapsed, peak, line = ran.elapsed, ran.peak_mb, ran.summary
    tree = run.work / "real-tree"
    make_empty_tree(tree, REAL_WALK_FILES)
    walk = bare_walk(tree)
    shutil.rmtree(tree)
    print(f"  {line}")
    print(f"  (a) the listing alone (generator):   {listed / listing:9.0f} entries/s  {listing:6.1f} s")
    print(f"  (b) the rows alone (ordered read):   {rows / reading:9.0f} rows/s     {reading:6.1f} s")
    print(f"  (c) archive-daemon reconcile, whole process, listing for the walk: {n / elapsed:9.0f} files/s  "
          f"{elapsed:6.1f} s  peak {peak:.0f} MB (targets < 120 s, < 1024 MB)   c/(a+b) = "
          f"{elapsed / (listing + reading):.2f}")
    projected = elapsed - listing + n / walk
    print(f"  a real scandir walk with stat: {walk:.0f} files/s on {REAL_WALK_FILES} empty files; with it instead "
          f"of the listing, {n} files would take about {projected:.0f} s")


def _paths(archive: Archive) -> dict[str, str]:
    return {name: str(path) for name, path in archive.roots.items()}


def part_recompute(run: Run) -> None:
    settings = yaml.safe_load(run.config_path.read_text())
    settings["access"] = {"telescopes": {"Nickel": {"proprietary_months": 18}}}
    changed_path = run.work / "config-nickel-18.yaml"
    changed_path.write_text(yaml.safe_dump(settings))
    config = load_config(str(changed_path))
    rules = Rules(config.access, Schedule(), config.keywords.frame_type_of)
    connection = run.connect()
    own, postgres = resource.getrusage(resource.RUSAGE_SELF), postgres_cpu(run.url)
    started = time.perf_counter()
    seen, changed = recompute(connection, config, rules, root="nickel", url=run.url)
    elapsed = time.perf_counter() - started
    postgres = postgres_cpu(run.url) - postgres
    deciding = resource.getrusage(resource.RUSAGE_SELF).ru_utime - own.ru_utime  # user time: the writers wait
    per_million = elapsed * MILLION / seen
    started = time.perf_counter()
    recompute(connection, config, rules, root="nickel", url=run.url)
    again = time.perf_counter() - started
    b = one_by_one(run.url, rules, "nickel", run.archive.roots["nickel"])
    print(f"  (a) recompute of root nickel after its period went from 12 to 18 months: {seen} files, {changed} "
          f"changed, {elapsed:.1f} s ({seen / elapsed:.0f} files/s; {per_million:.0f} s per million, target < 60)")
    print(f"      the same again, nothing to change (reading and deciding alone): {again:.1f} s")
    print(f"      CPU seconds: this process {deciding:.1f} (deciding), PostgreSQL {postgres:.1f} (reading, and writing "
          f"the changed rows and their indexes through two connections): on two cores of its own at least "
          f"{(deciding + postgres) / 2:.0f} s")
    print(f"  (b) decide + UPDATE + commit one at a time: {b:.0f} files/s (would take {seen / b:.0f} s)   "
          f"ratio a/b = {seen / elapsed / b:.1f}")
    night = run.archive.night(run.archive.nights - 100)
    directory = f"{night:%Y-%m/%d}/ccd"
    (run.archive.roots["nickel"] / directory / "override.access").write_text("* access public\n")
    with connection.cursor() as cursor:
        cursor.execute("SELECT txid_current() % 4294967296")  # the transaction the directory is decided in
        xid = cursor.fetchone()[0]
    rules = Rules(config.access, Schedule(), config.keywords.frame_type_of)
    started = time.perf_counter()
    seen, changed, _ = decide_directory(connection, config, rules, "nickel", directory)
    elapsed = time.perf_counter() - started
    clause, args = store.prefix_clause(directory)
    touched, inside = run.sql(f"SELECT count(*), count(*) FILTER (WHERE root = 'nickel' AND {clause}) "
                              f"FROM files WHERE xmin = %(xid)s::text::xid", {**args, "xid": xid})[0]
    files, = run.sql(f"SELECT count(*) FROM files WHERE root = 'nickel' AND {clause}", args)[0]
    print(f"  (c) an override file made {directory} public: {seen} files looked at, {changed} changed in "
          f"{elapsed * 1000:.0f} ms; rows written: {touched} ({inside} in that directory, which holds {files})")
    connection.close()


def part_ingest(run: Run) -> None:
    n = run.args.ingest_files
    tree = run.work / "ingest-tree"
    paths = make_fits_tree(tree, n)
    config = run.work / "config-ingest.yaml"
    config.write_text(f"roots:\n  - name: ingest\n    path: {tree}\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    limit = header_reading_limit(paths)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    limit_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    url = fresh_database(run.devdb, "ingest")
    ran = run_command(config, url, "ingest", str(tree))
    rate = n / ran.elapsed
    print(f"  {ran.summary}")
    print(f"  (a) plain header reading, one loop per core: {limit:7.0f} files/s")
    print(f"  (b) archive-daemon ingest into an empty archive, whole process: {rate:7.0f} files/s "
          f"({ran.elapsed:.1f} s, peak {ran.peak_mb:.0f} MB)   b/a = {rate / limit:.2f} (target >= 0.70)")
    used = ran.cpu_readers + ran.cpu_command + ran.cpu_postgres
    print(f"      CPU seconds: (a) {limit_cpu:.1f}; (b) {used:.1f}: its readers {ran.cpu_readers:.1f}, its own process "
          f"{ran.cpu_command:.1f}, PostgreSQL {ran.cpu_postgres:.1f}; with both on two cores, b/a cannot pass "
          f"{limit_cpu / used:.2f}")
    connection = psycopg2.connect(db.libpq_url(url))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('files') / count(*) FROM files")
        print(f"      on disk, table, TOAST and indexes: {cursor.fetchone()[0]:.0f} bytes a file")
    connection.close()
    start_up = run_command(config, url, "ingest", str(paths[0])).elapsed
    print(f"      of which start-up (the same command for one unchanged file): {start_up:.1f} s")
    if run.url:
        at_scale = n / run_command(config, run.url, "ingest", str(tree)).elapsed
        hours = run.archive.n / at_scale / 3600
        print(f"  (c) the same into the archive of {run.archive.n} rows: {at_scale:7.0f} files/s: rebuilding "
              f"it from its disks would take about {hours:.1f} h (headers read from local disk, page cache warm)")
    shutil.rmtree(tree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    parser.add_argument("--seconds", type=float, default=20, help="of each cone-search run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--ingest-files", type=int, default=20000)
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"--only: unknown part {unknown[0]!r} (known: {', '.join(PARTS)})")
    started = time.perf_counter()
    with workspace(f"scale, {dt.datetime.now():%Y-%m-%d %H:%M}, {load_note()}") as (work, devdb):
        tune(devdb)
        run = Run(args, work, devdb)
        try:
            if set(parts) - {"ingest"}:
                build(run)
            for part in (p for p in PARTS if p in parts):
                print(f"\n== {part} ({load_note()})")
                try:
                    globals()[f"part_{part}"](run)
                except Exception:  # a part that fails is reported; the others still run
                    print(f"  {part} failed:\n" + "".join("    " + line for line in
                                                          traceback.format_exc().splitlines(True)))
        finally:
            if run.server is not None:
                run.server.stop()
    print(f"\n(whole run {(time.perf_counter() - started) / 60:.0f} min, {load_note()})")


if __name__ == "__main__":
    main()
