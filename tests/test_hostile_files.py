"""Files made to hurt: absurd values, bombs, odd names, links and pipes. Each costs one file at most.

The daemon never hangs, never crash-loops and never loses good files for a bad one: a bad
value is noted and the file archived without it, a file that cannot be read is a failure
with its reason, and a row the database refuses is a failure of that row alone.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import time
import zlib
from pathlib import Path

import pytest
import yaml

from archive_daemon.config import load_config
from archive_daemon.loader import Batch, ingest
from archive_daemon.readers import HeaderReaders
from archive_daemon.access import Rules, Schedule
from archive_daemon.watcher import DiskEntry
from conftest import failures, rows, write_config
from daemonproc import Daemon, wait_until
from fitsmaker import card, image, raw

NIGHT = "2024-03/04/cam"
GOOD = {"OBJECT": "'M31'", "DATE-OBS": "'2024-03-05T06:07:08'", "EXPTIME": "30.0",
        "RA": "'10:05:13.9'", "DEC": "'-07:43:07'"}


def run(engine, config, *prefixes, workers=1):
    return ingest(engine, config, config.root("data"), list(prefixes) or [""], workers)


def hostile(archive_root: Path, name: str, cards: dict, **options) -> Path:
    return raw(archive_root / NIGHT / name, {k: v for k, v in {**GOOD, **cards}.items() if v is not None}, **options)


def test_an_equinox_that_makes_the_position_nan_costs_the_position_not_the_batch(engine, config, archive_root):
    hostile(archive_root, "nan.fits", {"RADESYS": "'FK5'", "EQUINOX": "1E+300"})
    for i in range(5):
        image(archive_root / NIGHT / f"good{i}.fits")
    summary = run(engine, config)
    archived = rows(engine)
    assert summary.new == 6 and summary.failed == []
    bad = archived[f"{NIGHT}/nan.fits"]
    assert bad["ra"] is None and bad["dec"] is None and bad["pos"] is None
    assert "EQUINOX" in bad["notes"] and "stored without a position" in bad["notes"]
    assert bad["object"] == "M31" and bad["exptime"] == 30.0


@pytest.mark.parametrize("cards, column, note", [
    ({"EXPTIME": "1E+300"}, "exptime", "EXPTIME 1e+300 is not a valid exposure time"),
    ({"EXPTIME": "-5.0"}, "exptime", "EXPTIME -5.0 is not a valid exposure time"),
    ({"EXPTIME": "1E+200", "COADDS": "1E+200"}, "exptime", "is not a valid exposure time"),
    ({"RADESYS": "'FK5'", "EQUINOX": "1E+400"}, "ra", "EQUINOX"),
    ({"RADESYS": "'FK4'", "EQUINOX": "-3.0E+10"}, "ra", "EQUINOX"),
    ({"RA": "1E+400"}, "ra", "RA inf is not a finite angle"),
    ({"DEC": "'nan'"}, "ra", "DEC 'nan' is not a finite angle"),
    ({"DATE-OBS": None, "MJD-OBS": "1E+400"}, "obs_start", "MJD-OBS inf is not a usable MJD"),
    ({"DATE-OBS": "'9999-12-31T23:59:59'"}, "obs_start", "is outside the years the archive accepts"),
    ({"DATE-OBS": "'0001-01-01T00:00:00'"}, "obs_start", "is outside the years the archive accepts"),
    ({"DATE-OBS": "'9999-12-31T24:00:00'"}, "obs_start", "is not a date"),
    ({"DATE-OBS": "'99999-01-01T00:00:00'"}, "obs_start", "is not a date"),
])
def test_one_absurd_value_is_noted_and_the_file_archived_without_it(engine, tmp_path, archive_root, cards, column, note):
    # Off the night layout, so that no night directory judges the dates first.
    config = load_config(str(write_config(tmp_path, archive_root, instruments=[{
        "name": "coadding", "header": {"OBJECT": "*"}, "keywords": {"coadds": ["COADDS"]}}])))
    raw(archive_root / "odd.fits", {k: v for k, v in {**GOOD, **cards}.items() if v is not None})
    summary = run(engine, config)
    assert summary.failed == [], summary.failed
    row = rows(engine)["odd.fits"]
    assert row[column] is None
    assert note in row["notes"]
    assert row["object"] == "M31"


@pytest.mark.parametrize("night", ["0001-01/01", "9999-12/31"])
def test_a_night_directory_outside_the_accepted_years_is_not_a_night(engine, config, archive_root, night):
    raw(archive_root / night / "cam" / "x.fits", {k: v for k, v in GOOD.items() if k != "DATE-OBS"})
    assert run(engine, config).failed == []
    row = rows(engine)[f"{night}/cam/x.fits"]
    assert row["obs_start"] is None
    assert row["night"].year not in (1, 9999)  # not the directory's: the file's modification time's
    assert row["instrument"] == "cam" and row["public_date"] is not None


def test_wcs_reference_values_that_overflow_give_no_footprint(engine, config, archive_root):
    wcs = {"CTYPE1": "'RA---TAN'", "CTYPE2": "'DEC--TAN'", "CRVAL1": "1E+300", "CRVAL2": "0.0",
           "CD1_1": "1E-3", "CD2_2": "1E-3", "CRPIX1": "1.0", "CRPIX2": "1.0", "RA": None, "DEC": None}
    hostile(archive_root, "wcs.fits", wcs, naxis=(2, 2), data=bytes(4))
    assert run(engine, config).failed == []
    row = rows(engine)[f"{NIGHT}/wcs.fits"]
    assert row["footprint"] is None and row["pos"] is None


def test_an_absurd_number_of_axes_is_refused_at_once(engine, config, archive_root):
    path = archive_root / NIGHT / "axes.fits"
    hostile(archive_root, "axes.fits", {})
    path.write_bytes(path.read_bytes().replace(card("NAXIS", "0"), card("NAXIS", "100000000000")))
    image(archive_root / NIGHT / "good.fits")
    started = time.monotonic()
    run(engine, config)
    assert time.monotonic() - started < 10
    assert failures(engine)[f"{NIGHT}/axes.fits"] == "unreadable header: NAXIS = 100000000000 (the standard allows 0 to 999)"
    assert f"{NIGHT}/good.fits" in rows(engine)


@pytest.mark.parametrize("key, value, reason", [
    ("BITPIX", "12", "unreadable header: BITPIX = 12 (must be 8, 16, 32, 64, -32 or -64)"),
    ("NAXIS1", "-7", "unreadable header: NAXIS1 = -7 (must be 0 or more)"),
])
def test_impossible_data_dimensions_are_refused(engine, config, archive_root, key, value, reason):
    path = hostile(archive_root, "dims.fits", {}, naxis=(2,), data=bytes(2))
    old = card(key, "8" if key == "BITPIX" else "2")
    path.write_bytes(path.read_bytes().replace(old, card(key, value)))
    run(engine, config)
    assert failures(engine)[f"{NIGHT}/dims.fits"] == reason


def _gzip_bomb(path: Path, megabytes: int) -> None:
    """SIMPLE, then megabytes of blank cards and no END: a few kB on disk."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    blank = b" " * (1 << 20)
    parts = [packer.compress(card("SIMPLE", "T"))]
    parts += [packer.compress(blank) for _ in range(megabytes)]
    parts.append(packer.flush())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(parts))


def test_a_gzip_bomb_without_end_is_refused_within_the_header_limit(engine, config, archive_root):
    _gzip_bomb(archive_root / NIGHT / "bomb.fits.gz", 200)
    started = time.monotonic()
    run(engine, config)
    assert time.monotonic() - started < 10
    assert failures(engine)[f"{NIGHT}/bomb.fits.gz"] == (
        "no END card in the first 100000 cards of the primary header (the most the archive reads)")


def test_a_gzip_stream_corrupt_inside_is_a_failure_with_its_reason(engine, config, archive_root):
    plain = image(archive_root / "made.fits").read_bytes()
    packed = bytearray(gzip.compress(plain))
    packed[len(packed) // 2:len(packed) // 2 + 40] = b"\xff" * 40
    (archive_root / NIGHT).mkdir(parents=True)
    (archive_root / NIGHT / "bad.fits.gz").write_bytes(bytes(packed))
    run(engine, config, NIGHT)
    assert failures(engine)[f"{NIGHT}/bad.fits.gz"].startswith("cannot read: ")


def test_the_header_kept_is_cut_at_the_configured_number_of_cards(engine, tmp_path, archive_root):
    config = load_config(str(write_config(tmp_path, archive_root, ingest={"max_header_cards": 40})))
    history = {f"HIST{i:04}": f"'{i}'" for i in range(60)}
    hostile(archive_root, "long.fits", history)
    hostile(archive_root, "short.fits", {})
    run(engine, config)
    archived = rows(engine)
    long_row, short_row = archived[f"{NIGHT}/long.fits"], archived[f"{NIGHT}/short.fits"]
    assert len(long_row["header"]) == 40 * 80
    assert long_row["object"] == "M31"
    assert "header: 69 cards, the first 40 kept (ingest.max_header_cards)" in long_row["notes"]
    assert short_row["header"].rstrip().endswith("END") and "max_header_cards" not in (short_row["notes"] or "")


def test_a_name_that_is_not_utf8_is_a_failure_and_the_batch_goes_in(engine, config, archive_root):
    directory = archive_root / NIGHT
    image(directory / "good.fits")
    image(directory / "also.fits")
    os.rename(directory / "also.fits", os.fsencode(directory) + b"/caf\xe9.fits")
    summary = run(engine, config)
    assert set(rows(engine)) == {f"{NIGHT}/good.fits"}
    assert failures(engine) == {f"{NIGHT}/caf\\xe9.fits": "the file name is not valid UTF-8"}
    assert summary.failed == [(f"{NIGHT}/caf\\xe9.fits", "the file name is not valid UTF-8")]


def test_a_row_the_database_refuses_is_a_failure_of_that_row_alone(engine, config, archive_root):
    # A path longer than a PostgreSQL index entry can hold: random names, so that the
    # server cannot compress the key below its limit.
    deep = archive_root / NIGHT
    for _ in range(12):
        deep = deep / os.urandom(120).hex()
    image(deep / "deep.fits")
    for i in range(3):
        image(archive_root / NIGHT / f"good{i}.fits")
    summary = run(engine, config)
    archived, failed = rows(engine), failures(engine)
    assert set(archived) == {f"{NIGHT}/good{i}.fits" for i in range(3)}
    assert summary.new == 3 and len(summary.failed) == 1
    (path, reason), = failed.items()
    assert reason.startswith("the database refused the row: index row size")
    assert path.endswith("...") and len(path.encode()) <= 2000


def test_a_file_that_vanishes_before_it_is_read_is_dropped_not_failed(engine, config, archive_root):
    gone = image(archive_root / NIGHT / "gone.fits")
    kept = image(archive_root / NIGHT / "kept.fits")
    run(engine, config)
    entries = [("changed", DiskEntry(f"{NIGHT}/{p.name}", p.stat().st_size, p.stat().st_mtime_ns // 1000 + 1))
               for p in (gone, kept)]
    gone.unlink()  # listed by a scan, deleted before its header is read
    batch = Batch("data")
    rules = Rules(config.access, Schedule({}), config.keywords.frame_type_of)
    with HeaderReaders(config, 1, rules) as readers:
        for result in readers.load(config.root("data"), entries):
            batch.add(*result)
    with engine.connect() as connection:
        written = batch.write(connection.connection.dbapi_connection)
    assert (written.updated, written.failed, written.removed) == (1, [], [f"{NIGHT}/gone.fits"])
    assert set(rows(engine)) == {f"{NIGHT}/kept.fits"} and failures(engine) == {}


def test_a_symbolic_link_is_not_followed(engine, config, archive_root, tmp_path):
    secret = image(tmp_path / "elsewhere" / "proprietary.fits")
    (archive_root / NIGHT).mkdir(parents=True)
    (archive_root / NIGHT / "r1.fits").symlink_to(secret)
    run(engine, config, f"{NIGHT}/r1.fits")
    assert rows(engine) == {}
    assert failures(engine) == {f"{NIGHT}/r1.fits": "symbolic links are not archived"}


def test_a_fifo_named_like_a_data_file_does_not_block(engine, config, archive_root):
    (archive_root / NIGHT).mkdir(parents=True)
    os.mkfifo(archive_root / NIGHT / "r1.fits")
    run(engine, config, f"{NIGHT}/r1.fits")
    assert failures(engine) == {f"{NIGHT}/r1.fits": "not a regular file"}



# --- the service: the same files under `archive-daemon run` --------------------------------

TONIGHT = dt.date.today().strftime("%Y-%m/%d") + "/cam"


@pytest.fixture
def daemon(tmp_path, archive_root, database_url):
    settings = {"roots": [{"name": "data", "path": str(archive_root), "mode": "inotify", "settle_seconds": 1}],
                "ingest": {"workers": 2}}
    config = tmp_path / "daemon.yaml"
    config.write_text(yaml.safe_dump(settings))
    made = Daemon(config, database_url, tmp_path)
    yield made
    if made.process is not None and made.process.poll() is None:
        made.stop()


def test_run_archives_the_batch_around_a_nan_position_and_stays_connected(daemon, engine, archive_root):
    hostile(archive_root, "nan.fits", {"RADESYS": "'FK5'", "EQUINOX": "1E+300"})
    for i in range(3):
        image(archive_root / NIGHT / f"good{i}.fits")
    daemon.start()
    wait_until(lambda: len(rows(engine)) == 4, what="all four files archived")
    assert rows(engine)[f"{NIGHT}/nan.fits"]["pos"] is None
    assert "database lost" not in daemon.log()
    assert "database ok" in daemon.status()


def test_run_records_a_name_that_is_not_utf8_and_goes_on(daemon, engine, archive_root):
    daemon.start()
    directory = archive_root / TONIGHT
    image(directory / "good.fits")
    made = image(archive_root.parent / "made" / "x.fits")
    os.rename(made, os.fsencode(directory) + b"/caf\xe9.fits")
    wait_until(lambda: failures(engine), what="the failure recorded")
    assert failures(engine) == {f"{TONIGHT}/caf\\xe9.fits": "the file name is not valid UTF-8"}
    wait_until(lambda: f"{TONIGHT}/good.fits" in rows(engine), what="the good file")
    image(directory / "later.fits")
    wait_until(lambda: f"{TONIGHT}/later.fits" in rows(engine), what="a file written afterwards")
    assert daemon.process.poll() is None


def test_run_records_a_broken_file_whose_mtime_is_in_the_future(daemon, engine, archive_root):
    daemon.start()
    path = archive_root / TONIGHT / "future.fits"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a FITS file, and dated next year")
    future = time.time() + 365 * 86400
    os.utime(path, (future, future))
    wait_until(lambda: failures(engine), what="the failure recorded")
    assert failures(engine)[f"{TONIGHT}/future.fits"].startswith("not a FITS file")


def test_run_forgets_a_file_with_a_name_that_is_not_utf8_once_it_is_deleted(daemon, engine, archive_root):
    daemon.start()
    directory = archive_root / TONIGHT
    made = image(archive_root.parent / "made" / "x.fits")
    bad = os.fsencode(directory) + b"/caf\xe9.fits"
    directory.mkdir(parents=True)
    os.rename(made, bad)
    wait_until(lambda: failures(engine), what="the failure recorded")
    os.unlink(bad)
    wait_until(lambda: not failures(engine), what="the failure forgotten")
    image(directory / "later.fits")
    wait_until(lambda: f"{TONIGHT}/later.fits" in rows(engine), what="a file written afterwards")
    assert daemon.process.poll() is None


def test_run_is_not_blocked_by_a_fifo_named_like_a_data_file(daemon, engine, archive_root):
    directory = archive_root / TONIGHT
    directory.mkdir(parents=True)
    os.mkfifo(directory / "r1.fits")
    image(directory / "r2.fits")
    daemon.start()
    wait_until(lambda: f"{TONIGHT}/r2.fits" in rows(engine), what="the file beside the FIFO")
    image(directory / "r3.fits")
    wait_until(lambda: f"{TONIGHT}/r3.fits" in rows(engine), what="a file written afterwards")
    assert f"{TONIGHT}/r1.fits" not in rows(engine)


def test_run_rescans_a_directory_renamed_to_a_name_that_is_not_utf8(daemon, engine, archive_root):
    night = archive_root / TONIGHT
    image(night / "a" / "r1.fits")
    daemon.start()
    wait_until(lambda: f"{TONIGHT}/a/r1.fits" in rows(engine), what="the file")
    os.rename(night / "a", os.fsencode(night) + b"/caf\xe9")
    wait_until(lambda: failures(engine), what="the moved file recorded")
    assert failures(engine) == {f"{TONIGHT}/caf\\xe9/r1.fits": "the file name is not valid UTF-8"}
    image(night / "later.fits")
    wait_until(lambda: f"{TONIGHT}/later.fits" in rows(engine), what="a file written afterwards")
    assert daemon.process.poll() is None and "Traceback" not in daemon.log()


def test_run_survives_an_override_file_in_a_directory_that_is_not_utf8(daemon, engine, archive_root):
    night = archive_root / TONIGHT
    odd = os.fsencode(night) + b"/caf\xe9"
    os.makedirs(odd)
    daemon.start()
    daemon.wait_status("files in")
    with open(odd + b"/override.access", "w") as rules:
        rules.write("r* public\n")
    image(night / "later.fits")
    wait_until(lambda: f"{TONIGHT}/later.fits" in rows(engine), what="a file written afterwards")
    time.sleep(1)
    assert daemon.process.poll() is None and "Traceback" not in daemon.log()


# --- directories nested past any recursion ----------------------------------------------

@pytest.fixture
def deep_tree(archive_root):
    """deep/a/a/a/... 1200 levels under the root (`mkdir -p` by anyone who can write the
    mount); removed without recursion afterwards, so that no clean-up hits Python's limit."""
    deep = os.fsencode(archive_root / "deep")
    os.mkdir(deep)
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1200):
        os.mkdir(b"a", dir_fd=fd)
        inner = os.open(b"a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    yield deep
    for level in range(1200, 0, -1):
        os.rmdir(os.path.join(deep, *([b"a"] * level)))
    os.rmdir(deep)


def test_a_deeply_nested_directory_is_a_problem_noted_not_a_dead_scan(engine, config, archive_root, deep_tree):
    raw(archive_root / NIGHT / "good.fits", GOOD)
    summary = run(engine, config)
    assert f"{NIGHT}/good.fits" in rows(engine)
    assert any("nested deeper than" in why for _, why in summary.problems.unreadable)


def test_run_goes_on_with_a_deeply_nested_directory_on_the_mount(daemon, engine, archive_root, deep_tree):
    """Where watchdog's inotify set-up walks the tree recursively (Python 3.11's os.walk) it
    dies of it and the root is polled instead, said in STATUS; either way the start-up scan
    ends and the daemon keeps archiving (and pinging its watchdog)."""
    daemon.start()
    daemon.wait_status("files in")
    image(archive_root / TONIGHT / "later.fits")
    wait_until(lambda: f"{TONIGHT}/later.fits" in rows(engine), what="a file written afterwards")
    assert daemon.process.poll() is None and "Traceback" not in daemon.log()
