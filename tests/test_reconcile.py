"""`archive-daemon reconcile`: whole roots compared with the database, and never a mass deletion by accident."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from archive_daemon.config import RootConfig
from archive_daemon.deletions import guard
from archive_daemon.mounts import watch_mode
from archive_daemon.watcher import ScanProblems
from conftest import rows, write_config
from daemonproc import UNPRIVILEGED
from fitsmaker import image
from test_cli import cli


def tree(root, nights=("2024-03/04", "2024-03/05", "2024-03/06"), per_night=10):
    for night in nights:
        for i in range(per_night):
            image(root / night / "cam" / f"f{i}.fits")


def test_reconcile_loads_new_files_drops_deleted_ones_and_says_so(database_url, engine, tmp_path, archive_root):
    tree(archive_root)
    config = str(write_config(tmp_path, archive_root))
    first = cli("--config", config, "reconcile", database_url=database_url)
    assert first.returncode == 0, first.stderr
    assert "data: 30 new, 0 updated, 0 unchanged, 0 failed" in first.stdout
    (archive_root / "2024-03/04/cam/f0.fits").unlink()
    image(archive_root / "2024-03/04/cam/new.fits")
    again = cli("--config", config, "reconcile", "--root", "data", database_url=database_url)
    assert again.returncode == 0
    assert "data: 1 new, 0 updated, 29 unchanged, 1 removed, 0 failed" in again.stdout
    assert "2024-03/04/cam/f0.fits" not in rows(engine)


def test_many_files_missing_at_once_are_kept_until_the_operator_allows_it(database_url, engine, tmp_path, archive_root):
    tree(archive_root)
    config = str(write_config(tmp_path, archive_root))
    cli("--config", config, "reconcile", database_url=database_url)
    for i in range(8):
        for night in ("2024-03/04", "2024-03/05"):
            (archive_root / night / "cam" / f"f{i}.fits").unlink()
    held = cli("--config", config, "reconcile", database_url=database_url)
    assert held.returncode == 1
    assert "16 of 30 archived files are no longer on disk" in held.stdout
    assert "--allow-mass-delete" in held.stdout
    assert len(rows(engine)) == 30
    allowed = cli("--config", config, "reconcile", "--allow-mass-delete", database_url=database_url)
    assert allowed.returncode == 0
    assert "16 removed" in allowed.stdout
    assert len(rows(engine)) == 14


def test_a_missing_or_empty_root_or_night_drops_nothing(database_url, engine, tmp_path, archive_root):
    tree(archive_root, per_night=2)
    config = str(write_config(tmp_path, archive_root))
    cli("--config", config, "reconcile", database_url=database_url)
    shutil.rmtree(archive_root / "2024-03/05")
    night = cli("--config", config, "reconcile", database_url=database_url)
    assert night.returncode == 1
    assert "2 archived files kept because 2024-03/05 is missing" in night.stdout
    shutil.rmtree(archive_root)
    archive_root.mkdir()
    empty = cli("--config", config, "reconcile", database_url=database_url)
    assert "is empty: 6 archived files kept until it is back" in empty.stdout
    archive_root.rmdir()
    gone = cli("--config", config, "reconcile", database_url=database_url)
    assert "is missing" in gone.stdout
    assert len(rows(engine)) == 6


def test_auto_mode_polls_network_filesystems_and_uses_inotify_on_local_ones(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/sda1 / ext4 rw 0 0\n"
        "nas:/export/data /mnt/data nfs4 rw 0 0\n"
        "/dev/sdb1 /mnt/data/local xfs rw 0 0\n"
        "sshfs#me@host: /mnt/remote fuse.sshfs rw 0 0\n"
        "//srv/share /mnt/with\\040space cifs rw 0 0\n")
    assert watch_mode("auto", "/mnt/data/shane", str(mounts)) == "polling"
    assert watch_mode("auto", "/mnt/data/local/x", str(mounts)) == "inotify"
    assert watch_mode("auto", "/mnt/remote/x", str(mounts)) == "polling"
    assert watch_mode("auto", "/mnt/with space/x", str(mounts)) == "polling"
    assert watch_mode("auto", "/srv", str(mounts)) == "inotify"
    assert watch_mode("inotify", "/mnt/data/shane", str(mounts)) == "inotify"


def test_allow_mass_delete_empties_an_emptied_root_but_never_a_missing_one(database_url, engine, tmp_path, archive_root):
    tree(archive_root, per_night=2)
    config = str(write_config(tmp_path, archive_root))
    cli("--config", config, "reconcile", database_url=database_url)
    shutil.rmtree(archive_root)
    held = cli("--config", config, "reconcile", "--allow-mass-delete", database_url=database_url)
    assert held.returncode == 1 and "is missing: 6 archived files kept until it is back" in held.stdout
    archive_root.mkdir()
    empty = cli("--config", config, "reconcile", database_url=database_url)
    assert empty.returncode == 1 and "--allow-mass-delete" in empty.stdout
    assert len(rows(engine)) == 6
    allowed = cli("--config", config, "reconcile", "--allow-mass-delete", database_url=database_url)
    assert allowed.returncode == 0, allowed.stdout
    assert "6 removed" in allowed.stdout and rows(engine) == {}


def test_allow_mass_delete_never_drops_what_an_unreadable_directory_hides(database_url, engine, tmp_path, archive_root):
    tree(archive_root, per_night=2)
    config = str(write_config(tmp_path, archive_root))
    cli("--config", config, "reconcile", database_url=database_url)
    os.chmod(archive_root / "2024-03/05", 0)
    try:
        held = cli("--config", config, "reconcile", "--allow-mass-delete", database_url=database_url,
                   prefix=UNPRIVILEGED)
    finally:
        os.chmod(archive_root / "2024-03/05", 0o755)
    assert held.returncode == 1
    assert "unreadable: 2024-03/05: Permission denied" in held.stdout
    assert len(rows(engine)) == 6


def _guard_root(tmp_path, files: int):
    root = tmp_path / "r"
    for i in range(files):
        (root / "2024-03/04/cam").mkdir(parents=True, exist_ok=True)
        (root / "2024-03/04/cam" / f"keep{i}.fits").write_bytes(b"x")
    return RootConfig("r", root)


def test_guard_limits_are_exact(tmp_path):
    root = _guard_root(tmp_path, 1)
    gone = [f"2024-03/04/cam/g{i}.fits" for i in range(11)]
    assert guard(root, gone[:10], 20, ScanProblems(), 0.1).drop == gone[:10]      # ten may always go
    withheld = guard(root, gone, 20, ScanProblems(), 0.1)
    assert withheld.drop == [] and "11 of 20 archived files" in withheld.withheld[0]
    assert guard(root, gone, 110, ScanProblems(), 0.1).drop == gone               # 11 = 10 % of 110
    assert guard(root, gone, 109, ScanProblems(), 0.1).drop == []
    assert guard(root, gone, 20, ScanProblems(), 0.1, allow_mass_delete=True).drop == gone


def test_guard_keeps_exactly_what_an_unreadable_directory_covers(tmp_path):
    root = _guard_root(tmp_path, 1)
    problems = ScanProblems([("2024-03/04/cam", "Permission denied")])
    gone = ["2024-03/04/cam", "2024-03/04/cam/a.fits", "2024-03/04/camera/b.fits", "2024-03/04/cam.fits"]
    result = guard(root, gone, 1000, problems, 0.1, allow_mass_delete=True)
    assert result.drop == ["2024-03/04/camera/b.fits", "2024-03/04/cam.fits"]
    assert result.withheld == ["root r: 2 archived files kept because an unreadable directory"]
    assert guard(root, gone, 1000, ScanProblems([("", "Permission denied")]), 0.1, True).drop == []


POLL_TWICE = """
import datetime as dt, os, queue, sys
from pathlib import Path
from archive_daemon.config import RootConfig
from archive_daemon.watcher import PollingWatch
events = queue.Queue()
watch = PollingWatch(RootConfig("r", Path(sys.argv[1]), recent_nights=1), events, today=lambda: dt.date(2024, 3, 4))
watch.poll(report_new_nights=False)
os.chmod(sys.argv[2], 0)
try:
    watch.poll()
finally:
    os.chmod(sys.argv[2], 0o755)
print(sorted(events.queue))
"""


def test_polling_reports_no_deletion_for_a_directory_it_cannot_read(tmp_path, archive_root):
    image(archive_root / "2024-03/04/cam/a.fits")
    result = subprocess.run([*UNPRIVILEGED, sys.executable, "-c", POLL_TWICE, str(archive_root),
                             str(archive_root / "2024-03/04/cam")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"  # a.fits is not reported gone: its directory could not be read
