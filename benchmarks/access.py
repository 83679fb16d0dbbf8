"""Access decisions at scale: bulk recompute speed, and the visibility predicate's query plan.

    .venv/bin/python benchmarks/access.py [--files 1000000]

Loads N synthetic rows (the whole sky, ten years of nights, programs from the header,
about 5% still proprietary), then:
  (a) recomputes 100k of them after a rule change that alters every decision, as
      `archive-daemon access recompute` does;
  (b) the baseline: decide and UPDATE + commit one file at a time (on a sample);
and prints EXPLAIN ANALYZE of a cone search filtered by the visibility predicate, for an
anonymous caller and for a member of two programs. Target: (a) under 30 s.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import math
import random
import time
from pathlib import Path

from bench import fresh_database, tree_sizes, workspace  # first: it puts the package on sys.path
from archive_daemon import db
from archive_daemon.access import Facts, Rules, Schedule
from archive_daemon.config import RootConfig, load_config
from archive_daemon.recompute import recompute
from archive_daemon.store import array_literal, copy_line, rule_text
from archive_daemon.visibility import VISIBLE

RECOMPUTED = 100_000
SAMPLE = 2000


def synthetic_rows(n: int, root: str, root_path: Path, rules: Rules):
    """Rows of files in night directories under root_path, made as needed (empty: the rules
    look in them for override files, and decide nothing for a directory that is missing)."""
    rng = random.Random(3)
    today = dt.date.today()
    for i in range(n):
        night = today - dt.timedelta(days=int(rng.random() * 3650))
        obs = dt.datetime.combine(night + dt.timedelta(days=1), dt.time(5), dt.timezone.utc)
        program = f"P{i % 500:03}"
        facts = Facts(f"{night:%Y-%m/%d}/cam/r{i:07}.fits", "Shane", "Kast", "object", program, obs, obs)
        (root_path / facts.path).parent.mkdir(parents=True, exist_ok=True)
        decision = rules.decide(str(root_path), facts)
        ra, dec = rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1)))
        yield copy_line((root, facts.path, 1000, obs, night, "Shane", "Kast", "object", program, obs,
                         ra, dec, f"({ra!r}d,{dec!r}d)", decision.public_date, array_literal(decision.grants),
                         rule_text(decision), "object", ""))


def load(url: str, n: int, rules: Rules, roots: Path) -> None:
    connection = db.create_engine(url).raw_connection()
    columns = ("root, path, size, mtime, night, telescope, instrument, frame_type, program, obs_start, ra, dec, "
               "pos, public_date, grants, access_rule, header_frame_type, header")
    with connection.cursor() as cursor:
        for root, count in (("r100k", RECOMPUTED), ("rest", n - RECOMPUTED)):
            buffer = io.StringIO("".join(synthetic_rows(count, root, roots / root, rules)))
            cursor.copy_expert(f"COPY files ({columns}) FROM STDIN", buffer)
        cursor.execute("ANALYZE files")
        cursor.execute("SELECT count(*) FILTER (WHERE public_date > now()) * 100.0 / count(*) FROM files")
        print(f"  {n} rows, {cursor.fetchone()[0]:.1f}% proprietary")
    connection.commit()
    connection.close()


def one_by_one(url: str, rules: Rules, root: str, root_path: Path) -> float:
    """Files/s of deciding, updating and committing one file at a time, on a sample of `root`."""
    connection = db.create_engine(url).raw_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, path, telescope, instrument, header_frame_type, program, obs_start, mtime "
                       "FROM files WHERE root = %s LIMIT %s", (root, SAMPLE))
        selected = cursor.fetchall()
        start = time.perf_counter()
        for file_id, *facts in selected:
            decision = rules.decide(str(root_path), Facts(*facts))
            cursor.execute("UPDATE files SET public_date = %s, grants = %s, access_rule = %s WHERE id = %s",
                           (decision.public_date, list(decision.grants), decision.rule, file_id))
            connection.commit()
    rate = SAMPLE / (time.perf_counter() - start)
    connection.close()
    return rate


def explain(url: str, who: list[str]) -> str:
    connection = db.create_engine(url).raw_connection()
    with connection.cursor() as cursor:
        cursor.execute(f"""
            EXPLAIN (ANALYZE, COSTS OFF, TIMING ON, SUMMARY ON)
            SELECT f.id, f.path, f.object, f.obs_start FROM files f
            WHERE f.pos <@ scircle(spoint(radians(150.0), radians(2.0)), radians(1.0)) AND {VISIBLE}
            ORDER BY f.obs_start LIMIT 100""", {"principals": who})
        plan = "\n".join("      " + r[0] for r in cursor.fetchall())
    connection.close()
    return plan


def main() -> None:
    with workspace("access") as (work, devdb):
        for n in tree_sizes(__doc__, 1_000_000):
            n = max(n, RECOMPUTED)
            url = fresh_database(devdb, f"access{n}")
            config = load_config(None)
            config = dataclasses.replace(config, roots=())
            rules = Rules(config.access, Schedule(), config.keywords.frame_type_of)
            started = time.perf_counter()
            load(url, n, rules, work / "roots")
            print(f"  loaded in {time.perf_counter() - started:.0f} s")
            longer = dataclasses.replace(config.access, proprietary_months=18)
            changed_rules = Rules(longer, Schedule(), config.keywords.frame_type_of)
            changed_config = dataclasses.replace(config, access=longer,
                                                 roots=(RootConfig(name="r100k", path=work / "roots" / "r100k"),))
            connection = db.create_engine(url).raw_connection()
            started = time.perf_counter()
            seen, changed = recompute(connection, changed_config, changed_rules, root="r100k", url=url)
            elapsed = time.perf_counter() - started
            connection.close()
            b = one_by_one(url, changed_rules, "rest", work / "roots" / "rest")
            print(f"  (a) recompute of {seen} files, {changed} changed: {elapsed:.1f} s "
                  f"({seen / elapsed:.0f} files/s; target under 30 s)")
            print(f"  (b) decide + UPDATE + commit one at a time:    {b:.0f} files/s "
                  f"(would take {seen / b:.0f} s)   ratio a/b = {seen / elapsed / b:.1f}")
            print("  cone search of 1 degree, visibility for an anonymous caller:")
            print(explain(url, []))
            print("  the same for a member of two programs:")
            print(explain(url, ["alice", "P001", "P002"]))


if __name__ == "__main__":
    main()
