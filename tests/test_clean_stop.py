"""A stop as systemd sees it: when the daemon's main process exits, nothing of it is left.

Under `KillMode=mixed` systemd sends SIGTERM to the main process only, and SIGKILLs (and
logs) whatever of the service still runs once the main process has exited.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest
import yaml

from daemonproc import Daemon, children

RECONCILED = "files in"
PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def subreaper():
    """Orphans of the daemon become this process's children (as the service's would be
    systemd's), so a helper that outlived the daemon stays visible, if only as a zombie."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def outlived(pid: int) -> bool:
    """Whether `pid` was still running when its parent exited (it is, or was, our orphan)."""
    if not Path(f"/proc/{pid}").exists():
        return False
    try:
        os.waitpid(pid, 0)  # reap it, whatever the answer
    except ChildProcessError:
        pass
    return True


def test_the_daemon_leaves_no_helper_process_when_it_exits(tmp_path, archive_root, database_url, subreaper):
    config = tmp_path / "daemon.yaml"
    config.write_text(yaml.safe_dump({"roots": [{"name": "data", "path": str(archive_root)}],
                                      "ingest": {"workers": 2}}))
    daemon = Daemon(config, database_url, tmp_path).start()
    daemon.wait_status(RECONCILED)
    helpers = children(daemon.process.pid)  # the header readers, multiprocessing's resource tracker
    assert len(helpers) >= 2
    assert daemon.stop() == 0, daemon.log()
    assert [pid for pid in helpers if outlived(pid)] == []
