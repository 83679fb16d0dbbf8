"""Symbolic links and special files under a root: recorded as failures, never followed or read."""

from __future__ import annotations

import os
import threading

import pytest

from archive_daemon.config import load_config
from archive_daemon.loader import ingest
from conftest import failures, rows, write_config
from daemonproc import Daemon, wait_until
from fitsmaker import image
from test_cli import cli
from test_daemon import NIGHT, RECONCILED, daemon_config

LINK = "symbolic links are not archived"


def reconcile(engine, tmp_path, root, **options):
    config = load_config(str(write_config(tmp_path, root)))
    return ingest(engine, config, config.root("data"), [""], workers=1, drop_gone=True, **options)


def test_a_link_to_a_proprietary_file_is_a_failure_not_a_public_copy(engine, tmp_path, archive_root):
    image(archive_root / "2024-03/04/secret/r1.fits", {"PROPID": "P1"})
    (archive_root / "2024-03/04/public").mkdir(parents=True)
    (archive_root / "2024-03/04/public/override.access").write_text("* access public\n")
    os.symlink("../secret/r1.fits", archive_root / "2024-03/04/public/r1.fits")
    summary = reconcile(engine, tmp_path, archive_root)
    assert set(rows(engine)) == {"2024-03/04/secret/r1.fits"}
    assert failures(engine) == {"2024-03/04/public/r1.fits": LINK}
    assert ("2024-03/04/public/r1.fits", LINK) in summary.failed


def test_links_out_of_the_root_and_dangling_links_are_failures(engine, tmp_path, archive_root):
    outside = image(tmp_path / "outside" / "x.fits")
    os.makedirs(archive_root / "2024-03/04/cam")
    os.symlink(outside, archive_root / "2024-03/04/cam/out.fits")
    os.symlink(tmp_path / "nowhere.fits", archive_root / "2024-03/04/cam/dangling.fits")
    os.symlink(outside, archive_root / "2024-03/04/cam/notes.txt")  # a name no include glob accepts
    reconcile(engine, tmp_path, archive_root)
    assert rows(engine) == {}
    assert failures(engine) == {"2024-03/04/cam/out.fits": LINK, "2024-03/04/cam/dangling.fits": LINK}


def test_a_linked_directory_is_recorded_and_never_descended(engine, tmp_path, archive_root):
    image(tmp_path / "elsewhere" / "cam" / "a.fits")
    (tmp_path / "elsewhere" / "cam" / "override.access").write_text("* access public\n")
    os.makedirs(archive_root / "2024-03/04")
    os.symlink(tmp_path / "elsewhere" / "cam", archive_root / "2024-03/04/cam")
    image(archive_root / "2024-03/05/cam/b.fits")
    reconcile(engine, tmp_path, archive_root)
    assert set(rows(engine)) == {"2024-03/05/cam/b.fits"}
    assert failures(engine) == {"2024-03/04/cam": LINK}


def test_a_file_replaced_by_a_link_loses_its_row(engine, tmp_path, archive_root):
    image(archive_root / "2024-03/04/cam/a.fits")
    image(archive_root / "2024-03/04/cam/b.fits", {"PROPID": "P1"})
    reconcile(engine, tmp_path, archive_root)
    assert len(rows(engine)) == 2
    (archive_root / "2024-03/04/cam/a.fits").unlink()
    os.symlink("b.fits", archive_root / "2024-03/04/cam/a.fits")
    reconcile(engine, tmp_path, archive_root)
    assert set(rows(engine)) == {"2024-03/04/cam/b.fits"}
    assert failures(engine) == {"2024-03/04/cam/a.fits": LINK}
    (archive_root / "2024-03/04/cam/a.fits").unlink()  # a real file again: archived again
    image(archive_root / "2024-03/04/cam/a.fits", {"OBJECT": "again"})
    reconcile(engine, tmp_path, archive_root)
    assert rows(engine)["2024-03/04/cam/a.fits"]["object"] == "again" and failures(engine) == {}


def test_a_night_directory_replaced_by_a_link_loses_its_rows(engine, tmp_path, archive_root):
    image(archive_root / "2024-03/04/cam/a.fits")
    image(tmp_path / "copy" / "cam" / "a.fits")
    reconcile(engine, tmp_path, archive_root)
    os.rename(archive_root / "2024-03/04", tmp_path / "moved")
    os.symlink(tmp_path / "copy", archive_root / "2024-03/04")
    reconcile(engine, tmp_path, archive_root)
    assert rows(engine) == {}


def test_a_fifo_is_a_failure_and_never_blocks(database_url, engine, tmp_path, archive_root):
    os.makedirs(archive_root / "2024-03/04/cam")
    os.mkfifo(archive_root / "2024-03/04/cam/pipe.fits")
    image(archive_root / "2024-03/04/cam/ok.fits")
    result = cli("--config", str(write_config(tmp_path, archive_root)), "reconcile", database_url=database_url)
    assert result.returncode == 1
    assert failures(engine) == {"2024-03/04/cam/pipe.fits": "not a regular file"}
    assert set(rows(engine)) == {"2024-03/04/cam/ok.fits"}


def test_a_configured_root_that_is_a_link_is_resolved_once(database_url, engine, tmp_path):
    real = tmp_path / "mount"
    image(real / "2024-03/04/cam/a.fits")
    os.symlink(real, tmp_path / "data")
    config = load_config(str(write_config(tmp_path, tmp_path / "data")))
    assert config.root("data").path == real
    assert config.root_for(tmp_path / "data" / "2024-03/04/cam/a.fits") == (config.root("data"), "2024-03/04/cam/a.fits")
    result = cli("--config", config.source, "ingest", str(tmp_path / "data"), database_url=database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(rows(engine)) == {"2024-03/04/cam/a.fits"}


@pytest.mark.parametrize("mode", ["inotify", "polling"])
def test_the_daemon_records_a_new_link_and_never_reads_through_it(engine, database_url, tmp_path, archive_root, mode):
    directory = archive_root / NIGHT / "cam"
    image(directory / "secret.fits", {"PROPID": "P1"})
    daemon = Daemon(daemon_config(tmp_path, archive_root, mode), database_url, tmp_path).start()
    try:
        daemon.wait_status(RECONCILED)
        wait_until(lambda: rows(engine), what="the real file")
        os.symlink("secret.fits", directory / "copy.fits")
        os.mkfifo(directory / "pipe.fits")
        wait_until(lambda: len(failures(engine)) == 2, what="both refusals recorded")
        assert failures(engine) == {f"{NIGHT}/cam/copy.fits": LINK, f"{NIGHT}/cam/pipe.fits": "not a regular file"}
        assert set(rows(engine)) == {f"{NIGHT}/cam/secret.fits"}
        (directory / "secret.fits").unlink()
        os.symlink("copy.fits", directory / "secret.fits")  # the archived file itself becomes a link
        wait_until(lambda: not rows(engine), what="the replaced file's row dropped")
        assert daemon.process.poll() is None
    finally:
        daemon.stop()


def test_settling_a_fifo_does_not_open_it(tmp_path):
    """Settler looks with lstat: a FIFO waits for no writer (the test would hang otherwise)."""
    from archive_daemon.config import RootConfig
    from archive_daemon.settle import Settler

    os.mkfifo(tmp_path / "p.fits")
    os.symlink("p.fits", tmp_path / "l.fits")
    settler = Settler({"r": RootConfig("r", tmp_path, settle_seconds=0)})
    settler.closed("r", "p.fits")
    settler.touched("r", "l.fits")
    done = threading.Event()
    result = {}

    def settle():
        result["ready"] = settler.due()[0]
        done.set()

    threading.Thread(target=settle, daemon=True).start()
    assert done.wait(5)
    assert sorted((e.path, e.refusal) for _, e in result["ready"]) == [
        ("l.fits", LINK), ("p.fits", "not a regular file")]
