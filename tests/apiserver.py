"""The API as it runs in production: gunicorn, threaded workers, real HTTP on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiServer:
    def __init__(self, config: Path, database_url: str, log: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "ARCHIVE_CONFIG": str(config), "ARCHIVE_DATABASE_URL": database_url,
               "ARCHIVE_API_BIND": f"127.0.0.1:{self.port}", "ARCHIVE_API_WORKERS": "2",
               "ARCHIVE_API_TIMEOUT": "3"}  # short, so that a slow download outlives it
        with open(log, "ab") as out:
            self.process = subprocess.Popen([GUNICORN, "-c", str(REPO / "api" / "gunicorn.conf.py"), "api.app:application"],
                                            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(self.base + "/api/v1/health", timeout=2)
                return
            except (requests.ConnectionError, requests.Timeout):  # workers still booting, on a busy machine
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start:\n{log.read_text()}")
                time.sleep(0.2)

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.base + path, timeout=30, **kwargs)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
