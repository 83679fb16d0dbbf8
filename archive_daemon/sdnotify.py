"""Talking to systemd: the notify protocol (READY, STATUS, WATCHDOG, STOPPING) and the journal.

Outside systemd (no $NOTIFY_SOCKET) notifications are dropped and logs go to stderr.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from systemd import daemon, journal


class Notifier:
    """sd_notify messages; watchdog pings at twice the rate $WATCHDOG_USEC asks for."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        enabled = usec and usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.ping_every = int(usec) / 1e6 / 2 if enabled else None
        self._last_ping = float("-inf")
        self._last_status = None
        self.ready_sent = False

    def ready(self, status: str) -> None:
        if not self.ready_sent:
            daemon.notify(f"READY=1\nSTATUS={status}")
            self.ready_sent = True
            self._last_status = status

    def status(self, text: str) -> None:
        if text != self._last_status:
            daemon.notify(f"STATUS={text}")
            self._last_status = text

    def watchdog(self) -> None:
        """Ping, unless the last ping is recent enough; call it from a loop that is making progress."""
        if self.ping_every is not None and self.clock() - self._last_ping >= self.ping_every / 2:
            daemon.notify("WATCHDOG=1")
            self._last_ping = self.clock()

    def stopping(self, status: str) -> None:
        daemon.notify(f"STOPPING=1\nSTATUS={status}")


def setup_logging(level: int = logging.INFO) -> None:
    """The journal, with structured fields, when systemd started us; stderr otherwise.

    Pass fields as `extra={"FILE_PATH": ..., "ROOT": ..., "REASON": ...}`: the journal keeps
    them as fields (`journalctl -u archive-daemon ROOT=shane`).
    """
    if os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"):
        handler: logging.Handler = journal.JournalHandler(SYSLOG_IDENTIFIER="archive-daemon")
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("archive_daemon")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
