"""Light commands start without the libraries that only the heavy ones need."""

import os
import subprocess
import sys

import pytest

from conftest import write_config
from fitsmaker import WCS_CARDS, image
from test_cli import ARCHIVE

# What reading FITS files, talking to the database and watching directories load: a
# command that does none of these must not pay for them at start-up.
HEAVY = {"astropy", "numpy", "PIL", "sqlalchemy", "alembic", "psycopg2", "watchdog", "systemd"}


def imported(*args, env=None) -> tuple[int, set[str]]:
    """Run `archive-daemon ARGS`: its exit status and the top-level packages it imported."""
    result = subprocess.run([sys.executable, "-X", "importtime", ARCHIVE, *args], capture_output=True,
                            text=True, env=env, timeout=60)
    names = {line.rsplit("|", 1)[1].strip().split(".")[0]
             for line in result.stderr.splitlines() if line.startswith("import time:")}
    return result.returncode, names


@pytest.mark.parametrize("args, status", [
    (["--help"], 0),
    (["users", "list", "--help"], 0),
    (["tokens", "--help"], 0),
    (["frobnicate"], 2),
    (["devdb", "status"], 3),
    (["devdb", "url"], 2),
])
def test_light_commands_import_nothing_heavy(tmp_path, monkeypatch, args, status):
    monkeypatch.setenv("ARCHIVE_VAR_DIR", str(tmp_path / "var"))  # an embedded database never started
    monkeypatch.delenv("ARCHIVE_CONFIG", raising=False)
    code, names = imported(*args)
    assert code == status
    assert "archive_daemon" in names  # the listing is of the command's own imports
    assert names.isdisjoint(HEAVY), sorted(names & HEAVY)


def test_a_bad_configuration_is_told_without_loading_the_database_layer(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("roots: [\n")
    code, names = imported("--config", str(config), "devdb", "status")
    assert code == 2
    assert names.isdisjoint(HEAVY), sorted(names & HEAVY)


def test_ingests_of_usual_headers_never_load_the_fits_libraries(database_url, tmp_path, archive_root):
    """The archive reads the usual card values and the usual (gnomonic) WCS itself: astropy, a
    third of a second to import, is loaded only for a header that needs it. An ingest with
    nothing to read (the daemon's hourly pass, a re-run ingest) never needs it."""
    image(archive_root / "2024-03/04/cam/a.fits", WCS_CARDS)
    config = write_config(tmp_path, archive_root)
    env = {**os.environ, "ARCHIVE_DATABASE_URL": database_url}
    env.pop("ARCHIVE_CONFIG", None)
    for workers in ("1", "1", "2"):  # the header read in this process, then nothing to read
        code, names = imported("--config", str(config), "ingest", str(archive_root), "--workers", workers, env=env)
        assert code == 0
        assert "archive_daemon" in names and "psycopg2" in names
        assert names.isdisjoint({"astropy", "numpy", "PIL"}), sorted(names & {"astropy", "numpy", "PIL"})
    image(archive_root / "2024-03/04/cam/b.fits", {**WCS_CARDS, "CTYPE1": "RA---SIN", "CTYPE2": "DEC--SIN"})
    code, names = imported("--config", str(config), "ingest", str(archive_root), "--workers", "1", env=env)
    assert code == 0 and "astropy" in names  # wcslib reads any other WCS


def test_a_command_on_the_database_checks_its_schema_without_the_migration_tool(database_url, tmp_path,
                                                                               archive_root):
    """Alembic is for `db upgrade`; every other command reads the schema's revision itself."""
    config = write_config(tmp_path, archive_root)
    env = {**os.environ, "ARCHIVE_DATABASE_URL": database_url}
    env.pop("ARCHIVE_CONFIG", None)
    code, names = imported("--config", str(config), "users", "list", env=env)
    assert code == 0
    assert "psycopg2" in names and names.isdisjoint({"alembic", "astropy"}), sorted(names & {"alembic", "astropy"})
