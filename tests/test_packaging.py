"""The installed package, as a deployment gets it: a wheel in a virtualenv outside the checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

import daemonproc
from archive_daemon import db
from conftest import _admin, rows
from daemonproc import Daemon, wait_until
from fitsmaker import image

CHECKOUT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel built from this checkout and the pinned dependencies."""
    base = tmp_path_factory.mktemp("installed")
    # Built from a copy: what a build/ left in the checkout holds must not reach the wheel.
    source = base / "source"
    shutil.copytree(CHECKOUT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "var", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"),
                    str(source)], check=True, capture_output=True)
    wheel, = (base / "dist").glob("*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True)
    subprocess.run([str(base / "venv/bin/pip"), "install", "-q", "-c", str(CHECKOUT / "constraints.txt"),
                    str(wheel)], check=True, capture_output=True, cwd=base)
    return base / "venv"


@pytest.fixture
def empty_database(cluster):
    """A database with no schema at all, as a new deployment starts."""
    name = f"deploy_{uuid.uuid4().hex[:12]}"
    admin = _admin(cluster)
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    yield sa.engine.make_url(cluster).set(database=name).render_as_string(hide_password=False)
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


def archive_daemon(venv: Path, url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin/archive-daemon"), *args], capture_output=True, text=True, cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", "ARCHIVE_DATABASE_URL": url})


def test_the_wheel_migrates_a_new_database_and_runs_the_daemon(installed, empty_database, tmp_path,
                                                                monkeypatch):
    where = subprocess.run([str(installed / "bin/python"), "-c", "import archive_daemon; print(archive_daemon.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert where.startswith(str(installed)), where

    upgraded = archive_daemon(installed, empty_database, "db", "upgrade", cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"at revision {db.head_revision()}" in upgraded.stdout

    root = tmp_path / "data"
    image(root / "2024-03/05/kast/r1.fits", {"OBJECT": "M31"})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"roots": [{"name": "data", "path": str(root)}]}))
    monkeypatch.setattr(daemonproc, "ARCHIVE", str(installed / "bin/archive-daemon"))
    monkeypatch.chdir(tmp_path)
    daemon = Daemon(config, empty_database, tmp_path).start()
    try:
        engine = db.create_engine(empty_database)
        wait_until(lambda: "2024-03/05/kast/r1.fits" in rows(engine), what="the file archived")
        engine.dispose()
    finally:
        assert daemon.stop() == 0, daemon.log()


# Runs last: it takes the migrations out of the module's installation.
def test_missing_migrations_are_one_line_not_a_traceback(installed, empty_database, tmp_path):
    site = Path(subprocess.run([str(installed / "bin/python"), "-c", "import archive_daemon; print(archive_daemon.__path__[0])"],
                               capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip())
    shutil.rmtree(site / "migrations")

    upgraded = archive_daemon(installed, empty_database, "db", "upgrade", cwd=tmp_path)
    assert upgraded.returncode == 2
    assert upgraded.stderr.count("\n") == 1 and "Traceback" not in upgraded.stderr, upgraded.stderr
    assert "migrations" in upgraded.stderr and str(site / "migrations") in upgraded.stderr
