"""The feeder alone: files from settling to rows, with real files and real PostgreSQL."""

from __future__ import annotations

import os
import time

import pytest
import yaml

from archive_daemon import schedule
from archive_daemon.config import load_config
from archive_daemon.feeder import Feeder
from archive_daemon.leader import connect
from conftest import failures, rows
from daemonproc import wait_until
from fitsmaker import image

PATH = "2019-05/02/cam/r1.fits"


@pytest.fixture
def feeder(tmp_path, archive_root):
    settings = {"roots": [{"name": "data", "path": str(archive_root), "settle_seconds": 1}],
                "ingest": {"workers": 1}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(settings))
    feeder = Feeder(load_config(str(tmp_path / "config.yaml")))
    yield feeder
    feeder.close()


@pytest.fixture
def connection(database_url):
    connection = connect(database_url, "test")
    yield connection
    connection.close()


def fits_bytes(tmp_path) -> bytes:
    return image(tmp_path / "made.fits", shape=(40, 40)).read_bytes()


def feed(feeder: Feeder, connection) -> None:
    feeder.settle()
    while feeder.write(connection):
        pass


def test_a_file_closed_before_its_writer_is_done_is_loaded_once_whole_and_never_a_failure(
        feeder, connection, engine, archive_root, tmp_path):
    feeder.use_rules(schedule.current_rules(connection, feeder.config))
    data = fits_bytes(tmp_path)
    target = archive_root / PATH
    target.parent.mkdir(parents=True)
    target.write_bytes(data[:len(data) // 2])  # a writer that closes and reopens, as some do
    feeder.report("closed", "data", PATH)
    feed(feeder, connection)
    assert rows(engine) == {} and failures(engine) == {}
    assert len(feeder) == 1  # waiting to settle again, not forgotten
    with open(target, "ab") as out:
        out.write(data[len(data) // 2:])
    wait_until(lambda: feed(feeder, connection) or rows(engine), what="the whole file loaded")
    assert rows(engine)[PATH]["size"] == len(data)
    assert failures(engine) == {} and (feeder.loaded, feeder.failed, len(feeder)) == (1, 0, 0)


def test_a_file_still_bad_once_settled_is_a_failure(feeder, connection, engine, archive_root):
    feeder.use_rules(schedule.current_rules(connection, feeder.config))
    target = archive_root / PATH
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a FITS file")
    settled = time.time() - 5
    os.utime(target, (settled, settled))
    feeder.report("closed", "data", PATH)
    feed(feeder, connection)
    assert rows(engine) == {} and PATH in failures(engine)
    assert (feeder.loaded, feeder.failed, len(feeder)) == (0, 1, 0)
