"""`archive-daemon demo`: the embedded database, the sample tree (with believable pixels),
one ingest, a look, and the API with the search page running in the background."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

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
ingest:
  previews: [96]      # the page's thumbnails, rendered as the files load
api:
  preview_cache_dir: previews
"""
REPO = Path(__file__).resolve().parent.parent

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
    written = samples.build_tree(demo_dir / "data", pixels=True)
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
    address = _start_api(demo_dir, config_file)
    print(f"""
Look around:
  psql "$(.venv/bin/archive-daemon devdb url)" -c 'SELECT path, object, obs_start, ra, dec FROM files'
  psql "$(.venv/bin/archive-daemon devdb url)" -c 'SELECT path, reason FROM ingest_failures'
  .venv/bin/archive-daemon --config {config_file} ingest {root.path}   # again: all unchanged
  .venv/bin/archive-daemon --config {config_file} run      # the service: watch the tree (Ctrl-C stops it)
  curl '{address}api/v1/files?ra=8h51m12s&dec=11d48m00s&radius=2d&fields=path,object'
  curl '{address}ivoa/tap/sync' --data-urlencode "QUERY=SELECT TOP 5 obs_id, target_name, t_min FROM ivoa.obscore" -d FORMAT=csv

The IVOA services (TAP at {address}ivoa/tap for pyvo and TOPCAT): docs/ivoa.md.
The search page: open {address} in a browser.
The API runs in the background (log: {demo_dir / "api.log"}); stop it with
  kill $(cat {demo_dir / "api.pid"})
and the embedded database with `.venv/bin/archive-daemon devdb stop`.""")
    return 0


def _start_api(demo_dir: Path, config_file: Path) -> str:
    """gunicorn serving the API and the page in the background (a daemon with a pid file,
    replacing the one an earlier demo left); its address once it answers."""
    pid_file, log = demo_dir / "api.pid", demo_dir / "api.log"
    _stop(pid_file)
    bind = os.environ.get("ARCHIVE_API_BIND", "127.0.0.1:8000")
    env = {**os.environ, "ARCHIVE_CONFIG": str(config_file), "ARCHIVE_API_BIND": bind, "ARCHIVE_API_WORKERS": "2"}
    subprocess.run([str(Path(sys.executable).with_name("gunicorn")), "-c", str(REPO / "api" / "gunicorn.conf.py"),
                    "--daemon", "--pid", str(pid_file), "--access-logfile", str(log), "--error-logfile", str(log),
                    "api.app:application"], cwd=REPO, env=env, check=True)
    address = f"http://{bind}/"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(address + "api/v1/health", timeout=2):
                return address
        except urllib.error.HTTPError:
            return address  # answering, if not (yet) healthy
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"the API did not start on {bind} (is the port taken? ARCHIVE_API_BIND=host:port "
                                 f"chooses another); its log: {log}") from None
            time.sleep(0.3)


def _stop(pid_file: Path) -> None:
    """Stops the API an earlier demo started, if it still runs."""
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)
