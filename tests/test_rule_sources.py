"""Rule sources (override files, directory listings, the schedule): read safely, compared by
every reconcile, and failing closed, on the record, whenever they cannot be used."""

from __future__ import annotations

import os
import time

import pytest

from archive_daemon.config import load_config
from archive_daemon.loader import ingest
from conftest import rows, write_config
from daemonproc import UNPRIVILEGED, Daemon, wait_until
from fitsmaker import image
from test_cli import cli
from test_daemon import NIGHT, OLD_NIGHT, RECONCILED, daemon_config

CAM = "2024-03/04/cam"


def rule_failures(engine) -> dict[str, str]:
    with engine.connect() as connection:
        return dict(connection.exec_driver_sql(
            "SELECT path, reason FROM ingest_failures WHERE kind = 'rules'").all())


def access_of(engine, path: str) -> tuple:
    row = rows(engine)[path]
    return row["public_date"] is not None, row["grants"]


def reconcile(database_url, tmp_path, root, prefix=(), **access):
    config = write_config(tmp_path, root, **({"access": access} if access else {}))
    return cli("--config", str(config), "reconcile", database_url=database_url, prefix=prefix, timeout=60)


def test_a_byte_order_mark_does_not_hide_the_first_line(engine, tmp_path, archive_root):
    image(archive_root / CAM / "r1.fits", {"PROPID": "P1"})
    (archive_root / CAM / "override.access").write_bytes("\ufeffr* access alice\n".encode())
    config = load_config(str(write_config(tmp_path, archive_root)))
    ingest(engine, config, config.root("data"), [""], workers=1)
    assert access_of(engine, f"{CAM}/r1.fits") == (True, ["alice"])


def _fifo(path):
    os.mkfifo(path)


def _zero(path):
    os.symlink("/dev/zero", path)


def _huge(path):
    path.write_text("r* access alice\n" * 100)


def _latin1(path):
    path.write_bytes("r* access jos\xe9\n".encode("latin-1"))


def _link_to_good(path):
    (path.parent / "elsewhere.txt").write_text("r* access public\n")
    os.symlink("elsewhere.txt", path)


def _not_staffs(path):
    path.write_text("r* access public\n")
    os.chown(path, 65534, 65534)


@pytest.mark.parametrize("make, reason", [
    (_fifo, "not a regular file"),
    (_zero, "symbolic links are not archived"),
    (_huge, "larger than 1000 bytes (access.rule_file_max_bytes)"),
    (_latin1, "not UTF-8 text (byte 14)"),
    (_link_to_good, "symbolic links are not archived"),
    (_not_staffs, "owned by uid 65534 (nobody), not one of access.rule_file_owners"),
], ids=["fifo", "link-to-dev-zero", "too-large", "not-utf8", "link", "not-staffs"])
def test_an_unusable_override_file_fails_closed_and_is_recorded(database_url, engine, tmp_path, archive_root,
                                                                 make, reason):
    image(archive_root / CAM / "r1.fits", {"PROPID": "P1"})
    image(archive_root / "2024-03/04/other/r2.fits", {"PROPID": "P1"})
    make(archive_root / CAM / "override.access")
    started = time.monotonic()
    result = reconcile(database_url, tmp_path, archive_root, rule_file_max_bytes=1000)
    assert time.monotonic() - started < 30
    assert result.returncode == 1, result.stdout + result.stderr
    assert access_of(engine, f"{CAM}/r1.fits") == (False, [])           # staff only
    assert access_of(engine, "2024-03/04/other/r2.fits") == (True, ["P1"])
    assert rule_failures(engine) == {f"{CAM}/override.access": f"{archive_root / CAM / 'override.access'}: {reason}"}
    assert "readable by staff only" in result.stdout and reason in result.stdout
    assert "rules unreadable: not public" in rows(engine)[f"{CAM}/r1.fits"]["access_rule"]


def test_override_files_changed_while_nobody_watched_are_applied_by_reconcile(database_url, engine, tmp_path,
                                                                                archive_root):
    image(archive_root / CAM / "r1.fits", {"PROPID": "P1"})
    override = archive_root / CAM / "override.access"
    assert reconcile(database_url, tmp_path, archive_root).returncode == 0
    assert access_of(engine, f"{CAM}/r1.fits") == (True, ["P1"])
    override.write_text("r* access alice\n")                                  # added
    assert reconcile(database_url, tmp_path, archive_root).returncode == 0
    assert access_of(engine, f"{CAM}/r1.fits") == (True, ["alice"])
    stamp = override.stat()
    override.write_text("r* access carol\n")                                  # edited, same size and mtime
    os.utime(override, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert reconcile(database_url, tmp_path, archive_root).returncode == 0
    assert access_of(engine, f"{CAM}/r1.fits") == (True, ["carol"])
    override.unlink()                                                         # removed
    assert reconcile(database_url, tmp_path, archive_root).returncode == 0
    assert access_of(engine, f"{CAM}/r1.fits") == (True, ["P1"])
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM rule_sources").scalar() == 0


def test_a_directory_that_cannot_be_listed_fails_closed_until_it_can(database_url, engine, tmp_path, archive_root):
    image(archive_root / CAM / "r1.fits", {"PROPID": "P1"})
    image(archive_root / "2024-03/04/other/r2.fits", {"PROPID": "P1"})
    assert reconcile(database_url, tmp_path, archive_root).returncode == 0
    os.chmod(archive_root / CAM, 0o311)  # permissions changed after the fact: enterable, not listable
    try:
        result = reconcile(database_url, tmp_path, archive_root, prefix=UNPRIVILEGED)
    finally:
        os.chmod(archive_root / CAM, 0o755)
    assert result.returncode == 1, result.stdout + result.stderr
    assert access_of(engine, f"{CAM}/r1.fits") == (False, [])                 # kept, but staff only
    assert access_of(engine, "2024-03/04/other/r2.fits") == (True, ["P1"])
    assert rule_failures(engine) == {CAM: f"{archive_root / CAM}: directory cannot be listed: Permission denied"}
    assert reconcile(database_url, tmp_path, archive_root, prefix=UNPRIVILEGED).returncode == 0
    assert access_of(engine, f"{CAM}/r1.fits") == (True, ["P1"])
    assert rule_failures(engine) == {}


def test_an_override_file_that_cannot_be_read_fails_closed(database_url, engine, tmp_path, archive_root):
    image(archive_root / CAM / "r1.fits", {"PROPID": "P1"})
    override = archive_root / CAM / "override.access"
    override.write_text("r* access public\n")
    override.chmod(0o000)
    result = reconcile(database_url, tmp_path, archive_root, prefix=UNPRIVILEGED)
    assert result.returncode == 1
    assert access_of(engine, f"{CAM}/r1.fits") == (False, [])
    assert rule_failures(engine) == {f"{CAM}/override.access": f"{override}: cannot open: Permission denied"}


def test_an_override_file_added_by_any_mount_user_cannot_publish_another_programs_files(
        database_url, engine, tmp_path, archive_root):
    """Two programs share a night's instrument directory; staff restricted it with an override.
    Anyone else who can write there adds override.9.access saying `public`: it is not staff's,
    so it supersedes nothing and the directory's files are readable by staff only."""
    cam = archive_root / CAM
    image(cam / "r1.fits", {"PROPID": "P2", "OBJECT": "theirs"})
    (cam / "override.access").write_text("* access P2\n")
    assert reconcile(database_url, tmp_path, archive_root).returncode == 0
    assert access_of(engine, f"{CAM}/r1.fits") == (True, ["P2"])
    (cam / "override.9.access").write_text("* access public\n")
    os.chown(cam / "override.9.access", 65534, 65534)  # written by somebody other than staff
    result = reconcile(database_url, tmp_path, archive_root)
    assert result.returncode == 1 and "owned by uid 65534 (nobody)" in result.stdout, result.stdout
    assert access_of(engine, f"{CAM}/r1.fits") == (False, [])
    assert "rules unreadable: not public" in rows(engine)[f"{CAM}/r1.fits"]["access_rule"]
    assert list(rule_failures(engine)) == [f"{CAM}/override.9.access"]


def test_rule_file_owners_are_root_and_the_roots_owner_unless_configured(database_url, engine, tmp_path,
                                                                        archive_root):
    image(archive_root / CAM / "r1.fits", {"PROPID": "P1"})
    override = archive_root / CAM / "override.access"
    override.write_text("r* access alice\n")
    os.chown(archive_root, 4242, 4242)              # the account staff write the mount as
    os.chown(override, 4242, 4242)
    assert reconcile(database_url, tmp_path, archive_root).returncode == 0
    assert access_of(engine, f"{CAM}/r1.fits") == (True, ["alice"])
    os.chown(override, 65534, 65534)
    assert reconcile(database_url, tmp_path, archive_root).returncode == 1
    assert access_of(engine, f"{CAM}/r1.fits") == (False, [])
    config = write_config(tmp_path, archive_root, access={"rule_file_owners": ["nobody"]})
    assert cli("--config", str(config), "access", "recompute", database_url=database_url).returncode == 0
    assert access_of(engine, f"{CAM}/r1.fits") == (True, ["alice"])
    assert rule_failures(engine) == {}
    os.chown(override, 4242, 4242)                  # listed owners replace the root's owner
    result = reconcile(database_url, tmp_path, archive_root, rule_file_owners=[65534])
    assert result.returncode == 1 and "owned by uid 4242 (no such user)" in result.stdout, result.stdout
    refused = reconcile(database_url, tmp_path, archive_root, rule_file_owners=["no-such-account"])
    assert refused.returncode == 2 and "access.rule_file_owners" in refused.stderr, refused.stderr


def test_override_files_in_a_linked_directory_govern_nothing(database_url, engine, tmp_path, archive_root):
    image(tmp_path / "elsewhere" / "r1.fits", {"PROPID": "P1"})
    (tmp_path / "elsewhere" / "override.access").write_bytes(os.urandom(64))
    os.makedirs(archive_root / "2024-03/04")
    os.symlink(tmp_path / "elsewhere", archive_root / CAM)
    result = reconcile(database_url, tmp_path, archive_root)
    assert rows(engine) == {} and rule_failures(engine) == {}
    assert "symbolic links are not archived" in result.stdout


def test_schedule_files_are_read_like_every_rule_file(database_url, tmp_path):
    good = tmp_path / "schedule.csv"
    good.write_bytes("\ufefftelescope,night,program\nShane,2024-03-04,P1\n".encode())
    loaded = cli("schedule", "load", str(good), database_url=database_url)
    assert loaded.returncode == 0, loaded.stderr
    assert "1 entries" in loaded.stdout
    os.mkfifo(tmp_path / "pipe.csv")
    os.symlink(good, tmp_path / "link.csv")
    (tmp_path / "big.yaml").write_text("#" * 2000)
    config = write_config(tmp_path, tmp_path, access={"rule_file_max_bytes": 1000})
    for name, reason in (("pipe.csv", "not a regular file"), ("link.csv", "symbolic links are not archived"),
                         ("big.yaml", "larger than 1000 bytes")):
        refused = cli("--config", str(config), "schedule", "load", str(tmp_path / name), database_url=database_url,
                      timeout=30)
        assert refused.returncode == 2 and reason in refused.stderr, refused.stderr


@pytest.fixture
def started(tmp_path, archive_root, database_url):
    """Start daemons on the test's root; every one is stopped at the end."""
    made = []

    def start(mode="inotify", prefix=None, **settings) -> Daemon:
        daemon = Daemon(daemon_config(tmp_path, archive_root, mode, **settings), database_url, tmp_path,
                        f"daemon{len(made)}", prefix=prefix)
        made.append(daemon)
        return daemon.start()

    yield start
    for daemon in made:
        if daemon.process.poll() is None:
            daemon.stop()


def test_an_override_written_while_the_daemon_was_stopped_is_applied_at_start_up(started, engine, archive_root):
    image(archive_root / OLD_NIGHT / "cam" / "r1.fits", {"PROPID": "P1"})
    daemon = started()
    wait_until(lambda: rows(engine), what="the file")
    assert access_of(engine, f"{OLD_NIGHT}/cam/r1.fits") == (True, ["P1"])
    daemon.stop()
    (archive_root / OLD_NIGHT / "cam" / "override.access").write_text("r* access alice\n")
    daemon = started()
    daemon.wait_status(RECONCILED)
    wait_until(lambda: access_of(engine, f"{OLD_NIGHT}/cam/r1.fits") == (True, ["alice"]), timeout=10,
               what="the override applied by the start-up reconcile")
    daemon.stop()
    (archive_root / OLD_NIGHT / "cam" / "override.access").unlink()
    started().wait_status(RECONCILED)
    wait_until(lambda: access_of(engine, f"{OLD_NIGHT}/cam/r1.fits") == (True, ["P1"]), timeout=10,
               what="the removed override no longer applied")


def test_a_polled_root_applies_an_override_in_an_old_night_at_the_next_reconcile(started, engine, archive_root):
    image(archive_root / OLD_NIGHT / "cam" / "r1.fits", {"PROPID": "P1"})
    daemon = started(mode="polling", reconcile_interval=3)
    daemon.wait_status(RECONCILED)
    wait_until(lambda: rows(engine), what="the file")
    (archive_root / OLD_NIGHT / "cam" / "override.access").write_text("r* access alice\n")
    wait_until(lambda: access_of(engine, f"{OLD_NIGHT}/cam/r1.fits") == (True, ["alice"]), timeout=15,
               what="the override applied by a reconcile")


def test_status_names_rule_sources_that_cannot_be_used(started, engine, archive_root):
    image(archive_root / NIGHT / "cam" / "r1.fits", {"PROPID": "P1"})
    image(archive_root / NIGHT / "locked" / "r2.fits", {"PROPID": "P1"})
    os.mkfifo(archive_root / NIGHT / "cam" / "override.access")
    daemon = started()
    wait_until(lambda: len(rows(engine)) == 2, what="both files")
    status = daemon.wait_status("readable by staff only")
    assert "1 directories" in status and "not a regular file" in status
    daemon.stop()
    os.chmod(archive_root / NIGHT / "locked", 0o311)  # and a directory that can no longer be listed
    try:
        daemon = started(prefix=UNPRIVILEGED)
        daemon.wait_status("2 directories readable by staff only")
        assert access_of(engine, f"{NIGHT}/locked/r2.fits") == (False, [])
        assert access_of(engine, f"{NIGHT}/cam/r1.fits") == (False, [])
        os.unlink(archive_root / NIGHT / "cam" / "override.access")  # fixed: the watch sees it
        daemon.wait_status("1 directories readable by staff only")
        assert access_of(engine, f"{NIGHT}/cam/r1.fits") == (True, ["P1"])
        assert daemon.process.poll() is None
    finally:
        os.chmod(archive_root / NIGHT / "locked", 0o755)


def test_an_override_file_changing_owner_is_applied_by_the_next_reconcile(started, engine, archive_root):
    """Ownership is part of an override file's fingerprint: chown-ing a refused one to staff
    (or away from staff) decides the directory again, like an edit. (The watches do not see a
    chown, as they do not see a chmod: the next reconcile does.)"""
    image(archive_root / NIGHT / "cam" / "r1.fits", {"PROPID": "P1"})
    override = archive_root / NIGHT / "cam" / "override.access"
    override.write_text("r* access alice\n")
    os.chown(override, 65534, 65534)
    daemon = started(reconcile_interval=3)
    daemon.wait_status("readable by staff only")
    wait_until(lambda: rows(engine), what="the file")
    assert access_of(engine, f"{NIGHT}/cam/r1.fits") == (False, [])
    os.chown(override, 0, 0)
    wait_until(lambda: access_of(engine, f"{NIGHT}/cam/r1.fits") == (True, ["alice"]), timeout=15,
               what="the override applied once staff own it")
    wait_until(lambda: "readable by staff only" not in daemon.status(), what="STATUS without the warning")
    os.chown(override, 65534, 65534)
    wait_until(lambda: access_of(engine, f"{NIGHT}/cam/r1.fits") == (False, []), timeout=15,
               what="the override refused again")


def test_an_unreadable_override_file_made_readable_is_applied_by_the_next_reconcile(started, engine,
                                                                                     archive_root):
    """The daemon keeps what it read of override files; one that failed is read again once it
    changes (here, its permissions), not only once its directory does."""
    image(archive_root / NIGHT / "cam" / "r1.fits", {"PROPID": "P1"})
    override = archive_root / NIGHT / "cam" / "override.access"
    override.write_text("r* access alice\n")
    started(prefix=UNPRIVILEGED, reconcile_interval=3)
    wait_until(lambda: rows(engine) and access_of(engine, f"{NIGHT}/cam/r1.fits") == (True, ["alice"]),
               what="the override applied")
    override.chmod(0)
    wait_until(lambda: access_of(engine, f"{NIGHT}/cam/r1.fits") == (False, []), timeout=15,
               what="the unreadable override failing closed")
    override.chmod(0o644)
    wait_until(lambda: access_of(engine, f"{NIGHT}/cam/r1.fits") == (True, ["alice"]), timeout=15,
               what="the override applied once it can be read")
