"""The API as it runs in production (gunicorn, threaded workers, real HTTP on loopback), and
the archive both API test modules serve."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from archive_daemon import db, principals
from archive_daemon.config import load_config
from archive_daemon.loader import ingest
from conftest import fresh_database
from fitsmaker import image

REPO = Path(__file__).resolve().parent.parent
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiServer:
    def __init__(self, config: Path, database_url: str, log: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "ARCHIVE_CONFIG": str(config), "ARCHIVE_DATABASE_URL": database_url,
               "ARCHIVE_API_BIND": f"127.0.0.1:{self.port}", "ARCHIVE_API_WORKERS": "2",
               "ARCHIVE_API_TIMEOUT": "3"}  # short, so that a slow download outlives it
        with open(log, "ab") as out:
            self.process = subprocess.Popen([GUNICORN, "-c", str(REPO / "api" / "gunicorn.conf.py"), "api.app:application"],
                                            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:  # a worker still loading the application leaves the connection waiting
                requests.get(self.base + "/api/v1/health", timeout=2)
                return
            except (requests.ConnectionError, requests.Timeout):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start:\n{log.read_text()}")
                time.sleep(0.2)

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return requests.get(self.base + path, **kwargs)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


RECENT = dt.date.today() - dt.timedelta(days=20)
NIGHT = f"{RECENT:%Y-%m/%d}"
OLD = "2019-05/02"


FRONT_END = {"X-Remote-User": "alice", "X-Archive-Secret": "front-end-secret-" + "0" * 32}


def build_archive(cluster: str, base: Path, api: dict | None = None, extra=None) -> dict:
    """Public and proprietary files, ingested into a database of their own, and users with
    tokens: alice (member of P1, which owns mine.fits) and bob (no programs).

    `extra(root)` may add files before the ingest. Returns the configuration (and its
    file), the database (url, engine, drop), {path: id}, tokens and the root."""
    root = base / "data"
    obs = f"{RECENT + dt.timedelta(days=1)}T05:00:00"
    image(root / OLD / "cam" / "public1.fits", {"OBJECT": "NGC 3115", "TELESCOP": "Shane", "INSTRUME": "Kast",
                                               "DATE-OBS": "2019-05-03T05:00:00", "PROPID": "P1"})
    image(root / OLD / "cam" / "public2.fits", {"OBJECT": "M31", "RA": "00:42:44.3", "DEC": "41:16:09",
                                               "DATE-OBS": "2019-05-03T06:00:00", "EXPTIME": 120.0})
    image(root / NIGHT / "cam" / "mine.fits", {"OBJECT": "SN 2026abc", "PROPID": "P1", "DATE-OBS": obs})
    image(root / NIGHT / "cam" / "theirs.fits", {"OBJECT": "SN 2026xyz", "PROPID": "P2", "DATE-OBS": obs})
    image(root / OLD / "cam" / "big.fits", {"OBJECT": "flat field", "DATE-OBS": "2019-05-03T07:00:00"},
          shape=(2048, 2048))
    outside = image(base / "outside" / "secret.fits", {"OBJECT": "outside", "DATE-OBS": "2019-05-03T05:00:00"})
    escape = root / OLD / "cam" / "escape.fits"
    shutil.copy(outside, escape)  # archived as a file, then made a link out of the root
    if extra:
        extra(root)
    config_path = base / "config.yaml"
    secret = base / "front-end.secret"
    secret.write_text(FRONT_END["X-Archive-Secret"])
    secret.chmod(0o600)  # a secret every user could read is refused
    settings = {"roots": [{"name": "data", "path": str(root)}],
                "api": {"user_header": "X-Remote-User", "front_end_secret_file": str(secret),
                        "max_limit": 50, "tar_max_files": 5, **(api or {})}}
    config_path.write_text(yaml.safe_dump(settings))
    url, drop = fresh_database(cluster)
    config = load_config(str(config_path))
    engine = db.create_engine(url)
    ingest(engine, config, config.root("data"), [""], workers=1)
    escape.unlink()
    os.symlink(outside, escape)
    connection = engine.raw_connection()
    principals.add_user(connection, "alice")
    principals.grant(connection, "alice", "P1")
    principals.add_user(connection, "bob")
    tokens = {name: principals.create_token(connection, name) for name in ("alice", "bob")}
    revoked = principals.create_token(connection, "alice")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE api_tokens SET revoked_at = now() WHERE token_hash = %s",
                       (principals.token_hash(revoked),))
    connection.commit()
    with connection.cursor() as cursor:
        cursor.execute("SELECT path, id FROM files")
        ids = dict(cursor.fetchall())
    connection.close()

    def close():
        engine.dispose()
        drop()
    return {"config": config, "config_path": config_path, "settings": settings, "url": url, "engine": engine,
            "close": close, "ids": ids, "tokens": tokens, "revoked": revoked, "root": root}
