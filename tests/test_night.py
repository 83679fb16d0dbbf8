"""One observing night: the local date, in the site's time zone, on which the night began.

The `night` column (what the API's night search matches) and the access rules (schedule,
public date) agree on it; rows stored under the old UTC definition get it on upgrade.
"""

from __future__ import annotations

import datetime as dt
import os
import signal

import sqlalchemy as sa
import yaml

from archive_daemon import db, schedule
from archive_daemon.config import load_config
from archive_daemon.loader import ingest
from conftest import database_at, rows, write_config
from daemonproc import wait_until
from fitsmaker import image
from test_cli import cli
from test_daemon import daemons  # noqa: F401 (a fixture)

LOS_ANGELES = "America/Los_Angeles"
# 05:30 in Los Angeles on 5 March 2024 (PST, UTC-8): dawn, still the night of the 4th. The
# UTC date twelve hours earlier, the old definition, is the 5th.
DAWN = "2024-03-05T13:30:00"
# 02:00 in Los Angeles, after midnight: the night of the 4th too.
AFTER_MIDNIGHT = "2024-03-05T10:00:00"


def load(engine, tmp_path, root, **settings):
    config = load_config(str(write_config(tmp_path, root, **settings)))
    ingest(engine, config, config.root("data"), [""], workers=1)
    return config


def nights(engine) -> dict[str, dt.date | None]:
    return {path: row["night"] for path, row in rows(engine).items()}


def test_a_site_west_of_utc_files_dawn_and_after_midnight_under_the_evening_before(engine, tmp_path, archive_root):
    image(archive_root / "misc" / "dawn.fits", {"DATE-OBS": DAWN})
    image(archive_root / "misc" / "late.fits", {"DATE-OBS": AFTER_MIDNIGHT})
    image(archive_root / "misc" / "evening.fits", {"DATE-OBS": "2024-03-05T03:00:00"})  # 19:00 on the 4th
    image(archive_root / "2024-03" / "06" / "cam" / "laid-out.fits", {"DATE-OBS": DAWN})  # the directory wins
    load(engine, tmp_path, archive_root, access={"timezone": LOS_ANGELES})
    assert nights(engine) == {"misc/dawn.fits": dt.date(2024, 3, 4), "misc/late.fits": dt.date(2024, 3, 4),
                              "misc/evening.fits": dt.date(2024, 3, 4),
                              "2024-03/06/cam/laid-out.fits": dt.date(2024, 3, 6)}


def test_the_access_rules_use_the_same_night(engine, tmp_path, archive_root):
    # A dawn flat with no program of its own is shared with the programs scheduled that night.
    connection = engine.raw_connection()
    schedule.store(connection, [("Shane", dt.date(2024, 3, 4), "EVENING"), ("Shane", dt.date(2024, 3, 5), "NEXT")])
    connection.close()
    image(archive_root / "misc" / "flat.fits", {"DATE-OBS": DAWN, "TELESCOP": "Shane", "OBSTYPE": "FLAT"})
    load(engine, tmp_path, archive_root, access={"timezone": LOS_ANGELES, "proprietary_months": 1})
    row = rows(engine)["misc/flat.fits"]
    assert (row["night"], row["grants"]) == (dt.date(2024, 3, 4), ["EVENING"])
    # public at the end of that night (noon in Los Angeles on the 5th) a month later
    assert row["public_date"] == dt.datetime(2024, 4, 5, 19, tzinfo=dt.timezone.utc)


def test_the_telescope_zone_wins_over_the_roots_and_the_roots_over_the_default(engine, tmp_path, archive_root):
    image(archive_root / "shane.fits", {"DATE-OBS": DAWN, "TELESCOP": "Shane"})
    image(archive_root / "subaru.fits", {"DATE-OBS": DAWN, "TELESCOP": "Subaru"})  # 22:30 in Tokyo on the 5th
    load(engine, tmp_path, archive_root, roots=[{"name": "data", "path": str(archive_root), "timezone": LOS_ANGELES}],
         access={"timezone": "Asia/Kolkata", "telescopes": {"Subaru": {"timezone": "Asia/Tokyo"}}})
    assert nights(engine) == {"shane.fits": dt.date(2024, 3, 4), "subaru.fits": dt.date(2024, 3, 5)}


def test_without_a_date_the_modification_time_gives_the_night_and_says_so(engine, tmp_path, archive_root):
    path = image(archive_root / "misc" / "undated.fits", {"DATE-OBS": None})
    dawn = dt.datetime.fromisoformat(DAWN + "+00:00").timestamp()
    os.utime(path, (dawn, dawn))
    load(engine, tmp_path, archive_root, access={"timezone": LOS_ANGELES})
    row = rows(engine)["misc/undated.fits"]
    assert row["night"] == dt.date(2024, 3, 4)
    assert "the night is taken from the file's modification time" in row["notes"]
    assert "the night is taken from the file's modification time" in row["access_rule"]


def test_access_recompute_moves_nights_when_the_time_zone_changes(engine, tmp_path, archive_root, database_url):
    image(archive_root / "misc" / "dawn.fits", {"DATE-OBS": DAWN})
    load(engine, tmp_path, archive_root)
    assert nights(engine) == {"misc/dawn.fits": dt.date(2024, 3, 5)}  # in UTC, dawn in California is midday
    config = write_config(tmp_path, archive_root, access={"timezone": LOS_ANGELES})
    explain = ("--config", str(config), "access", "explain", str(archive_root / "misc" / "dawn.fits"))
    stale = cli(*explain, database_url=database_url).stdout
    assert "night:       2024-03-04" in stale and "still holds an older decision" in stale
    result = cli("--config", str(config), "access", "recompute", database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert nights(engine) == {"misc/dawn.fits": dt.date(2024, 3, 4)}
    assert "older decision" not in cli(*explain, database_url=database_url).stdout


def test_the_daemon_moves_nights_when_a_reload_changes_a_roots_time_zone(daemons, engine, archive_root):
    image(archive_root / "misc" / "dawn.fits", {"DATE-OBS": DAWN})
    daemon = daemons().start()
    wait_until(lambda: nights(engine) == {"misc/dawn.fits": dt.date(2024, 3, 5)}, what="the file, night in UTC")
    settings = yaml.safe_load(daemon.config.read_text())
    settings["roots"][0]["timezone"] = LOS_ANGELES
    daemon.config.write_text(yaml.safe_dump(settings))
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: nights(engine) == {"misc/dawn.fits": dt.date(2024, 3, 4)}, what="the night in Los Angeles")


def test_db_upgrade_gives_rows_stored_with_utc_nights_their_local_night(cluster, tmp_path, archive_root):
    url, drop = database_at(cluster, "0003")
    try:
        engine = db.create_engine(url)
        with engine.begin() as connection:  # as the code of revision 0003 stored them
            connection.execute(sa.text("""
                INSERT INTO files (root, path, size, mtime, night, telescope, obs_start, header) VALUES
                ('data', 'misc/dawn.fits', 5760, now(), '2024-03-05', 'Shane', '2024-03-05T13:30:00Z', ''),
                ('data', 'misc/undated.fits', 5760, '2024-03-05T13:30:00Z', NULL, 'Shane', NULL, ''),
                ('data', '2024-03/06/cam/laid-out.fits', 5760, now(), '2024-03-06', 'Shane',
                 '2024-03-07T13:30:00Z', ''),
                ('gone', 'misc/elsewhere.fits', 5760, now(), '2024-03-05', 'Shane', '2024-03-05T13:30:00Z', '')
            """))
        (archive_root / "misc").mkdir()  # on disk: a directory that is away keeps its rows as they are
        config = write_config(tmp_path, archive_root, access={"timezone": LOS_ANGELES})
        result = cli("--config", str(config), "db", "upgrade", database_url=url)
        assert result.returncode == 0, result.stderr
        assert nights(engine) == {"misc/dawn.fits": dt.date(2024, 3, 4), "misc/undated.fits": dt.date(2024, 3, 4),
                                  "2024-03/06/cam/laid-out.fits": dt.date(2024, 3, 6),
                                  "misc/elsewhere.fits": None}  # its root is not configured here
        assert "nights found for 2 of 3 files without one" in result.stdout
        assert "roots this configuration does not name hold 1 of them" in result.stdout
        # the daemon, the API and the command line accept the schema
        db.check_schema(engine)
        engine.dispose()
    finally:
        drop()
