"""The database a command works on, and `db upgrade`, which brings its schema up to date."""

from __future__ import annotations

from .. import db, ivoaterms
from ..config import Config
from ..devdb import DevDB
from ..recompute import recompute
from ..schedule import current_rules


def database_url(config: Config) -> str:
    """The configured database, else the embedded one if it is running."""
    if config.database_url:
        return config.database_url
    devdb = DevDB()
    if devdb.running():
        return devdb.url()
    raise db.DatabaseError("no database configured (database.url in the configuration, or "
                           "$ARCHIVE_DATABASE_URL) and the embedded database is not running: "
                           "start it with `archive-daemon devdb start`")


def ready_engine(config: Config):
    """An engine on the command's database, whose schema must be the one this code needs."""
    engine = db.create_engine(database_url(config))
    db.check_schema(engine)
    return engine


def connect(config: Config):
    """A DBAPI connection to the command's database, its schema checked."""
    return db.connect(database_url(config))


def cmd_db(config: Config, args) -> int:
    engine = db.create_engine(database_url(config))
    print(f"database schema at revision {db.upgrade(engine)}")
    # A migration cannot see the configured time zones: it leaves the nights it cannot
    # know empty, and they are found here (see migrations/versions/0004_local_nights.py).
    connection = engine.raw_connection()
    seen, changed = recompute(connection, config, current_rules(connection, config), without_night=True,
                              url=database_url(config))
    ivoaterms.write(connection, config.ivoa)  # the ObsCore terms of this configuration
    if seen:
        print(f"nights found for {changed} of {seen} files without one")
    if changed < seen:
        print(f"roots this configuration does not name hold {seen - changed} of them: run "
              "`archive-daemon access recompute` with the configuration that names them")
    return 0
