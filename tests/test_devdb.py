"""`archive-daemon devdb`: the embedded database starts wherever the checkout lies."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

ARCHIVE = str(Path(sys.executable).with_name("archive-daemon"))


def devdb(var: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ARCHIVE_VAR_DIR": str(var)}
    return subprocess.run([ARCHIVE, "devdb", *args], capture_output=True, text=True, env=env, timeout=180)


@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as `postgres` only when started by root")
def test_starts_from_a_checkout_the_postgres_user_cannot_enter(tmp_path):
    """A clone in /root (mode 0700): the cluster must live where `postgres` can reach it."""
    private = tmp_path / "root-home"
    private.mkdir(mode=0o700)
    var = private / "archive" / "var"
    try:
        started = devdb(var, "start")
        assert started.returncode == 0, started.stderr
        url = devdb(var, "url").stdout.strip()
        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_sphere'")
            assert cursor.fetchone() is not None
        assert (var / "devdb" / "pgdata").is_symlink()
        assert "running" in devdb(var, "status").stdout
    finally:
        devdb(var, "stop")
        link = var / "devdb" / "pgdata"
        if link.is_symlink():
            shutil.rmtree(link.resolve().parent, ignore_errors=True)
