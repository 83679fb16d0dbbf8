"""The command line as operators use it: real processes, exit statuses, one-line errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from archive_daemon import db
from conftest import write_config
from fitsmaker import image

ARCHIVE = str(Path(sys.executable).with_name("archive-daemon"))


def cli(*args, database_url=None, env=None, prefix=(), timeout=120):
    environment = {**os.environ, **(env or {})}
    environment.pop("ARCHIVE_CONFIG", None)
    if database_url:
        environment["ARCHIVE_DATABASE_URL"] = database_url
    return subprocess.run([*prefix, ARCHIVE, *args], capture_output=True, text=True, env=environment,
                          timeout=timeout)


def test_ingest_reports_a_summary_and_exits_0_when_all_loaded(database_url, tmp_path, archive_root):
    image(archive_root / "2024-03/04/cam/a.fits")
    image(archive_root / "2024-03/04/cam/b.fits")
    config = write_config(tmp_path, archive_root)
    result = cli("--config", str(config), "ingest", str(archive_root), database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert "data: 2 new, 0 updated, 0 unchanged, 0 failed" in result.stdout
    again = cli("--config", str(config), "ingest", str(archive_root), "--workers", "1", database_url=database_url)
    assert "data: 0 new, 0 updated, 2 unchanged, 0 failed" in again.stdout


def test_ingest_exits_1_and_names_each_failure(database_url, tmp_path, archive_root):
    image(archive_root / "a.fits")
    (archive_root / "b.fits").write_bytes(b"")
    result = cli("--config", str(write_config(tmp_path, archive_root)), "ingest", str(archive_root),
                 database_url=database_url)
    assert result.returncode == 1
    assert "failed: b.fits: empty file" in result.stdout
    assert "Traceback" not in result.stderr


def test_plain_progress_lines_when_not_on_a_terminal(database_url, tmp_path, archive_root):
    image(archive_root / "a.fits")
    result = cli("--config", str(write_config(tmp_path, archive_root)), "ingest", str(archive_root),
                 database_url=database_url)
    assert "\r" not in result.stderr  # no progress bar escape codes in logs


def test_path_outside_every_root_is_a_usage_error(database_url, tmp_path, archive_root):
    result = cli("--config", str(write_config(tmp_path, archive_root)), "ingest", str(tmp_path),
                 database_url=database_url)
    assert result.returncode == 2
    assert "is not under any configured root" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("text, message", [
    ("roots:\n  - name: a\n    path: /x\n    mode: inotfy\n", "roots[0].mode: must be one of auto, inotify, polling (got 'inotfy')"),
    ("roots:\n  - name: a\n    path: /x\n    settle: 3\n", "roots[0].settle: unknown key"),
    ("roots:\n  - path: /x\n", "roots[0].name: is required"),
    ("ingest:\n  workers: many\n", "ingest.workers: must be a whole number (got 'many')"),
    ("instruments:\n  - name: cam\n    directory: cam\n    keywords: {ra_unit: furlongs}\n",
     "instruments[0].keywords.ra_unit: must be one of auto, hours, degrees, radians"),
    ("database:\n  url: mysql://x/y\n", "database.url: must be a postgresql:// URL"),
    ("roots: [\n", "not valid YAML"),
])
def test_bad_configuration_stops_with_one_line_naming_the_key(tmp_path, text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    result = cli("--config", str(config), "ingest", str(tmp_path))
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_database_url_from_the_environment_wins_and_a_dead_database_is_one_line(tmp_path, archive_root):
    config = write_config(tmp_path, archive_root, database={"url": "postgresql://nobody@127.0.0.1:1/none"})
    result = cli("--config", str(config), "ingest", str(archive_root))
    assert result.returncode == 2
    assert "cannot connect to the database" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_db_upgrade_is_idempotent(database_url, tmp_path):
    first = cli("db", "upgrade", database_url=database_url)
    second = cli("db", "upgrade", database_url=database_url)
    assert first.returncode == second.returncode == 0
    head = ScriptDirectory(str(db.MIGRATIONS)).get_current_head()
    assert f"database schema at revision {head}" in second.stdout


def test_unknown_command_is_a_usage_error():
    assert cli("frobnicate").returncode == 2
