"""The watch supervisor alone: real directories, real inotify, a real reconciler and database."""

from __future__ import annotations

import queue
import shutil

import pytest
import yaml

from archive_daemon.config import load_config
from archive_daemon.watches import WATCH_RETRY, Watches
from daemonproc import Clock, wait_until
from fitsmaker import image


@pytest.fixture
def watches(database_url):
    watches = Watches(database_url, {}, Clock())
    yield watches
    watches.stop()


def reconciled(watches: Watches, seen: list) -> bool:
    """Collect what the reconciler reported; True once a pass is done."""
    while True:
        try:
            kind, _, detail = watches.found.get_nowait()
        except queue.Empty:
            return False
        if kind == "reconciled":
            return True
        seen.append(detail.path)


def test_a_dead_watch_is_restarted_once_its_root_is_back_and_what_it_missed_is_found(
        watches, tmp_path, archive_root):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(
        {"roots": [{"name": "data", "path": str(archive_root), "mode": "inotify"}]}))
    config = load_config(str(tmp_path / "config.yaml"))
    watches.start(config)
    assert watches.ok() and watches.watches["data"].alive()
    shutil.rmtree(archive_root)  # an unmounted mount point: the watch ends
    wait_until(lambda: not watches.watches["data"].alive(), what="the watch ended")
    assert watches.ok()  # a missing root is waited for: no reason to stop the watchdog pings
    assert "data" not in watches.watches and "root data not watched" in watches.warnings["watch:data"]
    image(archive_root / "2019-05/02/cam/meanwhile.fits")  # the root is back, nothing watches it yet
    assert watches.ok() and "data" not in watches.watches  # tried again only every WATCH_RETRY
    watches.clock.now += WATCH_RETRY
    assert watches.ok() and watches.watches["data"].alive() and "watch:data" not in watches.warnings
    seen: list[str] = []
    wait_until(lambda: reconciled(watches, seen), what="the reconcile of the restarted root")
    assert seen == ["2019-05/02/cam/meanwhile.fits"]
