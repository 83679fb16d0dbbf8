"""Logging as the operator sees it: the journal with fields under systemd, stderr otherwise."""

from __future__ import annotations

import logging

import pytest
from systemd import journal

from archive_daemon.sdnotify import setup_logging


@pytest.fixture(autouse=True)
def restore_logging():
    logger = logging.getLogger("archive_daemon")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_under_systemd_logs_go_to_the_journal_with_fields(monkeypatch):
    sent = []
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")
    setup_logging()
    (handler,) = logging.getLogger("archive_daemon").handlers
    assert isinstance(handler, journal.JournalHandler)
    handler.send = lambda MESSAGE, **fields: sent.append((MESSAGE, fields))  # instead of the journal socket
    logging.getLogger("archive_daemon.service").warning(
        "%s not archived: %s", "r1.fits", "empty file",
        extra={"ROOT": "shane", "FILE_PATH": "2024-03/04/shane/r1.fits", "REASON": "empty file"})
    message, fields = sent[-1]
    assert message == "r1.fits not archived: empty file"
    assert (fields["ROOT"], fields["FILE_PATH"], fields["REASON"]) == ("shane", "2024-03/04/shane/r1.fits", "empty file")
    assert fields["SYSLOG_IDENTIFIER"] == "archive-daemon" and fields["PRIORITY"] == "4"


def test_outside_systemd_logs_go_to_stderr(monkeypatch, capsys):
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    setup_logging()
    logging.getLogger("archive_daemon.service").error("database lost: %s", "connection refused")
    assert "ERROR database lost: connection refused" in capsys.readouterr().err
