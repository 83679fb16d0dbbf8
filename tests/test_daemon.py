"""`archive-daemon run` as systemd runs it: real processes, real faults, real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from archive_daemon import db
from conftest import failures, rows
from daemonproc import Daemon, wait_until
from fitsmaker import image
from test_cli import cli

NIGHT = dt.date.today().strftime("%Y-%m/%d")  # tonight: where the telescopes write
OLD_NIGHT = "2019-05/02"
RECONCILED = "files in"  # STATUS once the start-up reconcile is done: "last reconcile 14:02 (0 files in 0 s)"


def fits_bytes(tmp_path: Path, obj: str = "M31", shape=(10, 10)) -> bytes:
    return image(tmp_path / "made" / f"{obj}.fits", {"OBJECT": obj}, shape).read_bytes()


def daemon_config(tmp_path: Path, root: Path, mode: str = "inotify", reconcile_interval: float = 3600,
                  extra_roots: list | None = None) -> Path:
    settings = {
        "roots": [{"name": "data", "path": str(root), "mode": mode, "settle_seconds": 1,
                   "poll_interval": 0.3}] + (extra_roots or []),
        "daemon": {"reconcile_interval": reconcile_interval},
        "ingest": {"workers": 2},
    }
    path = tmp_path / "daemon.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture
def daemons(tmp_path, archive_root, database_url):
    """Make daemons on the test's root and database; all are stopped at the end."""
    made: list[Daemon] = []

    def make(mode="inotify", url=None, watchdog_usec=None, **settings) -> Daemon:
        config = daemon_config(tmp_path, archive_root, mode, **settings)
        daemon = Daemon(config, url or database_url, tmp_path, f"daemon{len(made)}", watchdog_usec)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.stop()


def on_disk(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*.fits")}


def archived(engine) -> dict[str, int]:
    return {path: row["size"] for path, row in rows(engine).items()}


def write_slowly(path: Path, data: bytes, chunks: int = 6, pause: float = 0.4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    step = -(-len(data) // chunks)
    with open(path, "wb") as out:
        for i in range(0, len(data), step):
            out.write(data[i:i + step])
            out.flush()
            time.sleep(pause)


def test_notify_protocol_ready_watchdog_status_and_clean_stop(daemons, engine):
    daemon = daemons(watchdog_usec=1_000_000).start()
    time.sleep(3)
    with engine.connect() as connection:  # the heartbeat the API's health check reads
        role, status = connection.exec_driver_sql("SELECT role, status FROM daemon_heartbeat").one()
    assert role == "leader" and "database ok" in status
    pings = [t for t, m in daemon.notify.messages if m.get("WATCHDOG") == "1"]
    assert len(pings) >= 5
    assert max(b - a for a, b in zip(pings, pings[1:])) < 1.0  # within WATCHDOG_USEC, every time
    status = daemon.wait_status(RECONCILED)
    assert "0 queued, 0 loaded, 0 failed" in status and "database ok" in status
    assert daemon.stop() == 0
    assert daemon.notify.values("STOPPING") == ["1"]


def heartbeat_pids(engine) -> list[int]:
    with engine.connect() as connection:
        names = connection.exec_driver_sql("SELECT name FROM daemon_heartbeat").scalars().all()
    return sorted(int(name.rsplit(" ", 1)[1]) for name in names)


def test_heartbeat_rows_do_not_pile_up_across_restarts(daemons, engine):
    killed = daemons().start()
    wait_until(lambda: heartbeat_pids(engine) == [killed.process.pid], what="the first heartbeat")
    killed.kill()
    stopped = daemons().start()
    wait_until(lambda: heartbeat_pids(engine) == [stopped.process.pid], timeout=20, what="the killed daemon's row gone")
    stopped.stop()
    last = daemons().start()
    wait_until(lambda: heartbeat_pids(engine) == [last.process.pid], timeout=20, what="the stopped daemon's row gone")


@pytest.mark.parametrize("mode", ["inotify", "polling"])
def test_a_file_written_slowly_is_loaded_once_and_whole(daemons, engine, archive_root, tmp_path, mode):
    daemon = daemons(mode=mode).start()
    data = fits_bytes(tmp_path, shape=(40, 40))
    write_slowly(archive_root / NIGHT / "cam" / "slow.fits", data)  # a night directory new since start-up
    wait_until(lambda: archived(engine), what="the file's row")
    assert archived(engine) == {f"{NIGHT}/cam/slow.fits": len(data)}
    time.sleep(1.5)
    assert "1 loaded, 0 failed" in daemon.status()
    assert failures(engine) == {}


@pytest.mark.parametrize("mode", ["inotify", "polling"])
def test_deleted_files_leave_and_renamed_files_follow(daemons, engine, archive_root, tmp_path, mode):
    data = fits_bytes(tmp_path)
    for name in ("a", "b"):
        (archive_root / NIGHT / "cam").mkdir(parents=True, exist_ok=True)
        (archive_root / NIGHT / "cam" / f"{name}.fits").write_bytes(data)
    daemons(mode=mode).start()
    wait_until(lambda: len(archived(engine)) == 2, what="both files archived")
    (archive_root / NIGHT / "cam" / "a.fits").unlink()
    (archive_root / NIGHT / "cam" / "b.fits").rename(archive_root / NIGHT / "cam" / "c.fits")
    wait_until(lambda: set(archived(engine)) == {f"{NIGHT}/cam/c.fits"}, what="a gone, b renamed to c")


def test_polling_leaves_old_nights_to_the_reconcile_scan(daemons, engine, archive_root, tmp_path):
    data = fits_bytes(tmp_path)
    (archive_root / OLD_NIGHT / "cam").mkdir(parents=True)
    daemon = daemons(mode="polling", reconcile_interval=8).start()
    daemon.wait_status(RECONCILED)
    (archive_root / OLD_NIGHT / "cam" / "late.fits").write_bytes(data)
    (archive_root / NIGHT / "cam").mkdir(parents=True)
    (archive_root / NIGHT / "cam" / "new.fits").write_bytes(data)
    wait_until(lambda: f"{NIGHT}/cam/new.fits" in archived(engine), timeout=5, what="tonight's file, polled")
    assert f"{OLD_NIGHT}/cam/late.fits" not in archived(engine)
    wait_until(lambda: f"{OLD_NIGHT}/cam/late.fits" in archived(engine), timeout=15, what="the reconcile")


def test_after_kill_9_a_restart_makes_the_database_match_the_disk(daemons, engine, archive_root, tmp_path):
    data = fits_bytes(tmp_path)
    for i in range(3000):
        directory = archive_root / NIGHT / f"cam{i % 3}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{i:05}.fits").write_bytes(data)
    daemon = daemons().start()
    wait_until(lambda: 0 < len(archived(engine)) < 3000, interval=0.02, what="loading under way")
    daemon.kill()
    disk = sorted(on_disk(archive_root))
    for path in disk[::25]:  # files disappear while it is down, loaded or not
        (archive_root / path).unlink()
    (archive_root / OLD_NIGHT / "cam").mkdir(parents=True)
    for i in range(50):  # and new ones arrive
        (archive_root / OLD_NIGHT / "cam" / f"n{i}.fits").write_bytes(data)
    daemons().start()
    wait_until(lambda: archived(engine) == on_disk(archive_root), timeout=60, what="database equal to the disk")


def test_database_outage_loses_nothing_and_the_daemon_never_exits(daemons, own_cluster, archive_root, tmp_path):
    engine = db.create_engine(own_cluster.url())
    data = fits_bytes(tmp_path)
    directory = archive_root / NIGHT / "cam"
    directory.mkdir(parents=True)
    daemon = daemons(url=own_cluster.url()).start()
    (directory / "before.fits").write_bytes(data)
    wait_until(lambda: len(archived(engine)) == 1, what="the first file")
    engine.dispose()
    own_cluster.stop()
    for i in range(20):
        (directory / f"during{i}.fits").write_bytes(data)
    (directory / "before.fits").unlink()
    daemon.wait_status("unreachable")
    time.sleep(2)
    assert daemon.process.poll() is None
    own_cluster.start()
    wait_until(lambda: archived(engine) == on_disk(archive_root), timeout=60, what="catching up")
    daemon.wait_status("database ok")
    assert daemon.process.poll() is None
    assert "database lost" in daemon.log()
    engine.dispose()


def test_standby_takes_over_when_the_leader_is_killed(daemons, engine, archive_root, tmp_path):
    data = fits_bytes(tmp_path)
    directory = archive_root / NIGHT / "cam"
    directory.mkdir(parents=True)
    leader = daemons().start()
    leader.wait_status(RECONCILED)
    standby = daemons().start()
    standby.wait_status("standby")
    (directory / "one.fits").write_bytes(data)
    wait_until(lambda: len(archived(engine)) == 1, what="the leader loading")
    assert "0 loaded" not in leader.status()
    leader.kill()
    killed_at = time.monotonic()
    (directory / "two.fits").write_bytes(data)
    wait_until(lambda: len(archived(engine)) == 2, timeout=20, what="the standby taking over")
    assert time.monotonic() - killed_at < 10
    assert "standby" not in standby.status()


@pytest.mark.parametrize("mode", ["inotify", "polling"])
def test_a_root_that_vanishes_keeps_its_rows_and_catches_up_when_back(daemons, engine, archive_root, tmp_path, mode):
    data = fits_bytes(tmp_path)
    for i in range(30):
        (archive_root / OLD_NIGHT / "cam").mkdir(parents=True, exist_ok=True)
        (archive_root / OLD_NIGHT / "cam" / f"f{i}.fits").write_bytes(data)
    daemon = daemons(mode=mode, reconcile_interval=2).start()
    wait_until(lambda: len(archived(engine)) == 30, what="the first reconcile")
    away = archive_root.with_name("data.away")
    archive_root.rename(away)
    archive_root.mkdir()  # what an NFS mount point looks like when the mount is gone
    daemon.wait_status("is empty", timeout=15)
    assert len(archived(engine)) == 30
    archive_root.rmdir()
    away.rename(archive_root)
    (archive_root / OLD_NIGHT / "cam" / "meanwhile.fits").write_bytes(data)
    wait_until(lambda: archived(engine) == on_disk(archive_root), timeout=20, what="catching up")
    assert len(archived(engine)) == 31


def test_sighup_reloads_the_configuration_and_a_bad_one_is_refused(daemons, engine, archive_root, tmp_path):
    daemon = daemons().start()
    daemon.wait_status(RECONCILED)
    second = tmp_path / "second"
    second.mkdir()
    settings = yaml.safe_load(daemon.config.read_text())
    settings["roots"].append({"name": "second", "path": str(second), "settle_seconds": 1})
    daemon.config.write_text(yaml.safe_dump(settings))
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "watching root second" in daemon.log(), what="the new root watched")
    image(second / NIGHT / "cam" / "x.fits")
    wait_until(lambda: rows(engine, "root = 'second'"), what="a file of the new root")
    daemon.config.write_text("roots: [{name: data}]\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_status("configuration not reloaded")
    assert "roots[0].path" in daemon.status()
    assert daemon.process.poll() is None


@pytest.mark.parametrize("unit", ["archive-daemon.service", "archive-api.service"])
def test_unit_files_verify(tmp_path, unit):
    text = (Path(__file__).parent.parent / "systemd" / unit).read_text()
    assert "Type=notify" in text and "Restart=on-failure" in text and "ProtectSystem=strict" in text
    if unit == "archive-daemon.service":
        assert "WatchdogSec=" in text
    # verify checks that the commands exist: point them at this installation
    local = tmp_path / unit
    local.write_text(text.replace("/opt/archive/venv/bin/", str(Path(os.sys.executable).parent) + "/")
                     .replace("/opt/archive/src", str(Path(__file__).parent.parent)))
    result = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_watch_that_dies_is_noticed_and_restarted(daemons, engine, archive_root, tmp_path):
    data = fits_bytes(tmp_path)
    daemon = daemons(watchdog_usec=2_000_000).start()
    daemon.wait_status(RECONCILED)
    shutil.rmtree(archive_root)  # the watched directory itself goes: inotify ends the watch
    wait_until(lambda: "watch of root data stopped" in daemon.log(), timeout=10, what="the dead watch noticed")
    (archive_root / NIGHT / "cam").mkdir(parents=True)
    (archive_root / NIGHT / "cam" / "back.fits").write_bytes(data)
    wait_until(lambda: archived(engine), timeout=20, what="the file, through the restarted watch")
    pings = [t for t, m in daemon.notify.messages if m.get("WATCHDOG") == "1"]
    assert max(b - a for a, b in zip(pings, pings[1:])) < 2.0  # a missing root is no reason to be restarted


def test_an_edited_override_file_changes_access_without_a_restart(daemons, engine, archive_root, tmp_path):
    directory = archive_root / NIGHT / "cam"
    directory.mkdir(parents=True)
    (directory / "r1.fits").write_bytes(fits_bytes(tmp_path))
    (directory / "override.access").write_text("r* access alice\n")
    daemons().start()
    wait_until(lambda: rows(engine), what="the file")
    assert rows(engine)[f"{NIGHT}/cam/r1.fits"]["grants"] == ["alice"]
    (directory / "override.1.access").write_text("r* access bob\n")
    wait_until(lambda: rows(engine)[f"{NIGHT}/cam/r1.fits"]["grants"] == ["bob"], what="the new override in force")


def test_sighup_with_new_access_rules_decides_again(daemons, engine, archive_root, tmp_path):
    (archive_root / NIGHT / "cam").mkdir(parents=True)
    (archive_root / NIGHT / "cam" / "r1.fits").write_bytes(fits_bytes(tmp_path))
    daemon = daemons().start()
    wait_until(lambda: rows(engine), what="the file")
    before = rows(engine)[f"{NIGHT}/cam/r1.fits"]["public_date"]
    settings = yaml.safe_load(daemon.config.read_text())
    settings["access"] = {"proprietary_months": 24}
    daemon.config.write_text(yaml.safe_dump(settings))
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: rows(engine)[f"{NIGHT}/cam/r1.fits"]["public_date"] != before, what="the new period")
    assert rows(engine)[f"{NIGHT}/cam/r1.fits"]["public_date"].year == before.year + 1


def test_access_settings_changed_while_the_daemon_was_stopped_apply_to_archived_files(
        daemons, engine, archive_root, tmp_path):
    """The operator tightens `access` and restarts instead of reloading (or a playbook ships
    new code and configuration together): the leader decides again for every file. A start
    with the settings the archive already follows decides nothing again."""
    path = f"{NIGHT}/cam/a.fits"
    image(archive_root / path, {"OBJECT": "no owner"})
    daemon = daemons()
    settings = yaml.safe_load(daemon.config.read_text())
    daemon.config.write_text(yaml.safe_dump({**settings, "access": {"unknown_owner": "public"}}))
    daemon.start().wait_status(RECONCILED)
    wait_until(lambda: rows(engine), what="the file")
    assert rows(engine)[path]["access_rule"] == "owner unknown: public by configuration"
    daemon.stop()
    daemon.config.write_text(yaml.safe_dump(settings))  # unknown_owner: proprietary, the default
    daemon.start().wait_status(RECONCILED)
    assert rows(engine)[path]["access_rule"] == "owner unknown: proprietary period"
    assert rows(engine)[path]["public_date"] > dt.datetime.now(dt.timezone.utc)
    daemon.stop()
    daemon.start().wait_status(RECONCILED)
    assert daemon.log().count("access settings changed") == 2, daemon.log()
    daemon.stop()
    daemon.config.write_text(yaml.safe_dump({**settings, "access": {"proprietary_months": 24}}))
    recomputed = cli("--config", str(daemon.config), "access", "recompute", database_url=daemon.url)
    assert recomputed.returncode == 0, recomputed.stderr
    daemon.start().wait_status(RECONCILED)  # the recompute did it, and said so
    assert daemon.log().count("access settings changed") == 2, daemon.log()
