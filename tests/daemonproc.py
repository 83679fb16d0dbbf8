"""`archive-daemon run` as a real process, with a notify socket of the test's own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ARCHIVE = str(Path(sys.executable).with_name("archive-daemon"))
# Root reads every file whatever its mode. Tests of unreadable files run the archive without
# the capabilities that allow it, as any other user would run it.
UNPRIVILEGED = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Poll until `predicate()` is truthy; returns its value, fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Clock:
    """A monotonic clock the test moves, for the daemon's parts tested alone."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


class NotifySocket:
    """The datagram socket systemd would listen on; records every message with its time."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536).decode()
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def values(self, key: str) -> list[str]:
        return [m[key] for _, m in self.messages if key in m]

    def status(self) -> str:
        statuses = self.values("STATUS")
        return statuses[-1] if statuses else ""

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


class Daemon:
    """One `archive-daemon run` process; its log goes to a file the test can read."""

    def __init__(self, config: Path, database_url: str, workdir: Path, name: str = "daemon",
                 watchdog_usec: int | None = None, prefix: list[str] | None = None):
        self.config, self.url, self.workdir, self.name = config, database_url, workdir, name
        self.prefix = prefix or []  # e.g. UNPRIVILEGED
        self.watchdog_usec = watchdog_usec
        self.notify: NotifySocket | None = None
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / f"{name}.log"

    def start(self, wait_ready: bool = True) -> "Daemon":
        socket_path = self.workdir / f"{self.name}.notify"
        if socket_path.exists():
            socket_path.unlink()
        self.notify = NotifySocket(socket_path)
        env = {**os.environ, "ARCHIVE_DATABASE_URL": self.url, "NOTIFY_SOCKET": str(socket_path)}
        env.pop("ARCHIVE_CONFIG", None)
        if self.watchdog_usec:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([*self.prefix, ARCHIVE, "--config", str(self.config), "run"],
                                            stdout=log, stderr=subprocess.STDOUT, env=env)
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_until(lambda: self.notify.values("READY") or self.process.poll() is not None, timeout,
                   what=f"{self.name} READY=1")
        assert self.process.poll() is None, f"{self.name} exited:\n{self.log()}"

    def status(self) -> str:
        return self.notify.status()

    def wait_status(self, text: str, timeout: float = 30.0) -> str:
        return wait_until(lambda: text in self.status() and self.status(), timeout,
                          what=f"STATUS containing {text!r} (last: {self.status()!r})")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, and the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.notify.close()
        return code

    def kill(self) -> None:
        """kill -9 the daemon and its header readers, as a crash would leave things."""
        forked = children(self.process.pid)
        self.process.kill()
        self.process.wait()
        for pid in forked:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.notify.close()
