"""The command line as operators use it: real processes, exit statuses, one-line errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from archive_daemon import db
from conftest import write_config
from daemonproc import wait_until
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
    assert db.head_revision() == head  # what commands check the schema against, read without alembic


def test_unknown_command_is_a_usage_error():
    assert cli("frobnicate").returncode == 2


def test_a_name_that_is_not_utf8_is_listed_as_a_failure(database_url, tmp_path, archive_root):
    image(archive_root / "a.fits")
    image(archive_root / "b.fits")
    os.rename(archive_root / "b.fits", os.fsencode(archive_root) + b"/caf\xe9.fits")
    result = cli("--config", str(write_config(tmp_path, archive_root)), "ingest", str(archive_root),
                 database_url=database_url)
    assert result.returncode == 1, result.stderr
    assert "data: 1 new, 0 updated, 0 unchanged, 0 failed" not in result.stdout
    assert "failed: caf\\xe9.fits: the file name is not valid UTF-8" in result.stdout
    assert result.stderr == ""


def _deep_file(archive_root: Path) -> None:
    """A file whose path is longer than a PostgreSQL index entry can hold."""
    deep = archive_root
    for _ in range(12):
        deep = deep / os.urandom(120).hex()
    image(deep / "deep.fits")


def test_parallel_readers_go_on_after_a_row_the_database_refuses(database_url, tmp_path, archive_root):
    _deep_file(archive_root)
    data = image(tmp_path / "made.fits").read_bytes()
    for i in range(400):
        (archive_root / f"f{i:03}.fits").write_bytes(data)
    config = write_config(tmp_path, archive_root, ingest={"batch_size": 10})
    result = cli("--config", str(config), "ingest", str(archive_root), "--workers", "2", database_url=database_url)
    assert result.returncode == 1, result.stderr
    assert "data: 400 new, 0 updated, 0 unchanged, 1 failed" in result.stdout
    assert "the database refused the row" in result.stdout


def test_ingest_of_a_symbolic_link_records_it_and_archives_nothing(database_url, tmp_path, archive_root):
    secret = image(tmp_path / "elsewhere" / "proprietary.fits")
    (archive_root / "r1.fits").symlink_to(secret)
    result = cli("--config", str(write_config(tmp_path, archive_root)), "ingest", str(archive_root / "r1.fits"),
                 database_url=database_url)
    assert result.returncode == 1, result.stderr
    assert "failed: r1.fits: symbolic links are not archived" in result.stdout


def test_ingest_of_a_fifo_does_not_block(database_url, tmp_path, archive_root):
    os.mkfifo(archive_root / "r1.fits")
    result = cli("--config", str(write_config(tmp_path, archive_root)), "ingest", str(archive_root / "r1.fits"),
                 database_url=database_url)
    assert result.returncode == 1, result.stderr
    assert "failed: r1.fits: not a regular file" in result.stdout


@pytest.mark.parametrize("name, content, where", [
    ("schedule.csv", b"telescope,night,program\nShane,2024-03-04,2024A-\x0017\n", "line 2"),
    ("schedule.yaml", b'- {telescope: Shane, night: 2024-03-04, program: "2024A-\\017"}\n', "entry 1"),
])
def test_a_nul_in_a_schedule_is_one_line_naming_it(database_url, tmp_path, archive_root, name, content, where):
    schedule = tmp_path / name
    schedule.write_bytes(content)
    result = cli("--config", str(write_config(tmp_path, archive_root)), "schedule", "load", str(schedule),
                 database_url=database_url)
    assert result.returncode == 2
    assert f"{where}: contains a NUL character" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_database_stopping_mid_ingest_is_one_line_and_exit_2(own_cluster, tmp_path, archive_root):
    data = image(tmp_path / "made.fits").read_bytes()
    for i in range(8000):  # enough to be loading still when the server has stopped, even on a busy machine
        (archive_root / f"f{i:04}.fits").write_bytes(data)
    config = write_config(tmp_path, archive_root, ingest={"batch_size": 20})
    environment = {**os.environ, "ARCHIVE_DATABASE_URL": own_cluster.url()}
    environment.pop("ARCHIVE_CONFIG", None)
    process = subprocess.Popen([ARCHIVE, "--config", str(config), "ingest", str(archive_root), "--workers", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    engine = sa.create_engine(db.driver_url(own_cluster.url()), poolclass=sa.pool.NullPool)
    wait_until(lambda: process.poll() is not None or _count(engine) > 0, interval=0.02, what="loading under way")
    own_cluster.stop()
    try:
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 2, (out, err)
    # Progress lines aside, the answer is one line. (Rarely, a server shutting down in the
    # middle of a COPY makes psycopg2's C code print an error chain of its own beforehand.)
    errors = [line for line in err.splitlines() if "files checked" not in line]
    assert errors[-1].startswith("archive-daemon: database error: ") and "Traceback" not in err, err


def _count(engine) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql("SELECT count(*) FROM files").scalar()


def test_access_explain_of_a_name_that_is_not_utf8_is_one_line(database_url, tmp_path, archive_root):
    image(archive_root / "a.fits")
    os.rename(archive_root / "a.fits", os.fsencode(archive_root) + b"/caf\xe9.fits")
    config = str(write_config(tmp_path, archive_root))
    cli("--config", config, "ingest", str(archive_root), database_url=database_url)
    result = subprocess.run([ARCHIVE, "--config", config, "access", "explain", os.fsencode(archive_root) + b"/caf\xe9.fits"],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "ARCHIVE_DATABASE_URL": database_url})
    assert result.returncode == 2
    assert "not in the archive (root data, path caf" in result.stderr and len(result.stderr.strip().splitlines()) == 1
