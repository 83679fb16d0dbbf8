"""`archive-daemon demo`: the embedded database, the sample tree, one ingest, and a look."""

from __future__ import annotations

import sqlalchemy as sa

from . import db, samples
from .config import load_config
from .devdb import DevDB, default_var_dir
from .loader import ingest
from .progress import Progress

_CONFIG = """\
# Written by `archive-daemon demo`: the sample data as one archive root.
roots:
  - name: lick
    path: data
"""

_SHOW = """
    SELECT path, instrument, coalesce(object, '') AS object,
           to_char(obs_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS start_utc,
           round(ra::numeric, 4) AS ra, round(dec::numeric, 4) AS dec
    FROM files ORDER BY obs_start LIMIT 12
"""
# M67-ish cone: files whose position lies within 2 degrees of RA 132.8, DEC +11.8.
_CONE = """
    SELECT path, object FROM files
    WHERE pos <@ scircle(spoint(radians(132.8), radians(11.8)), radians(2.0)) ORDER BY path
"""


def run(_config, _args) -> int:
    """Load the samples into the embedded database and show what is there."""
    engine = db.create_engine(DevDB().start())
    demo_dir = default_var_dir() / "demo"
    written = samples.build_tree(demo_dir / "data")
    config_file = demo_dir / "config.yaml"
    config_file.write_text(_CONFIG)
    config = load_config(str(config_file))
    root = config.root("lick")
    with Progress("ingest lick") as progress:
        summary = ingest(engine, config, root, [""], config.ingest.worker_count, progress.advance)
    print(f"\nSample tree: {len(written)} files in {root.path}")
    summary.report("lick")
    with engine.connect() as connection:
        total, failures = connection.execute(sa.text(
            "SELECT (SELECT count(*) FROM files), (SELECT count(*) FROM ingest_failures)")).one()
        print(f"\nThe archive holds {total} files; {failures} are recorded in ingest_failures.\n")
        for row in connection.execute(sa.text(_SHOW)):
            print("  " + "  ".join(str(v) for v in row))
        print("\nA cone search (2 degrees around RA 132.8, DEC +11.8):")
        for row in connection.execute(sa.text(_CONE)):
            print("  " + "  ".join(str(v) for v in row))
    print(f"""
Look around:
  psql "$(.venv/bin/archive-daemon devdb url)" -c 'SELECT path, object, obs_start, ra, dec FROM files'
  psql "$(.venv/bin/archive-daemon devdb url)" -c 'SELECT path, reason FROM ingest_failures'
  .venv/bin/archive-daemon --config {config_file} ingest {root.path}   # again: all unchanged
  .venv/bin/archive-daemon --config {config_file} run      # the service: watch the tree (Ctrl-C stops it)
The API (in another terminal, from this directory):
  ARCHIVE_CONFIG={config_file} .venv/bin/gunicorn -c api/gunicorn.conf.py api.app:application
  curl 'http://127.0.0.1:8000/api/v1/files?ra=8h51m12s&dec=11d48m00s&radius=2d&fields=path,object'
Stop the embedded database with `.venv/bin/archive-daemon devdb stop`.""")
    return 0
