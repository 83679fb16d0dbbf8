"""Database connections and schema migrations.

Operators write plain `postgresql://` URLs; we pin the driver to psycopg2 here, because
SQLAlchemy 2.1 would otherwise pick psycopg 3 for that scheme.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: a command that only checks the schema never loads it
    import sqlalchemy as sa

# The repository keeps them at the top (migrations/); archive_daemon/migrations links there, and
# the wheel ships them at that place as package data, so one path serves every kind of install.
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# A revision file's own name and the one it follows: `revision = "0002"`, `down_revision = "0001"`.
_REVISION_LINE = re.compile(r'^(revision|down_revision) = (?:"([^"]+)"|None)$', re.M)


class DatabaseError(Exception):
    """The database cannot be used as it is; the message says what to do."""


def libpq_url(url: str) -> str:
    """The URL as libpq itself reads it (no SQLAlchemy driver suffix)."""
    return "postgresql://" + driver_url(url).split("://", 1)[1]


def driver_url(url: str) -> str:
    """The URL with the psycopg2 driver made explicit."""
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    raise DatabaseError(f"not a PostgreSQL URL: {url!r}")


def create_engine(url: str) -> sa.Engine:
    import sqlalchemy as sa
    return sa.create_engine(driver_url(url), pool_pre_ping=True, future=True)


def _present() -> None:
    """Raise DatabaseError unless our migrations are there."""
    if not (MIGRATIONS / "env.py").is_file():
        raise DatabaseError(f"the schema migrations are missing from {MIGRATIONS}: "
                            "reinstall the package (a wheel built from the repository ships them)")


def _alembic(connection: sa.Connection):
    """Alembic's configuration naming our migrations, to run them on `connection`."""
    from alembic.config import Config  # here: alembic takes a fifth of a second to import
    _present()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> str:
    """Apply the pending migrations (up to `revision`); returns the revision the schema is now at."""
    from alembic import command
    with engine.begin() as connection:
        command.upgrade(_alembic(connection), revision)
        return current_revision(connection.connection.dbapi_connection)


def current_revision(connection) -> str | None:
    """The revision the database's schema is at, as alembic records it (None: no schema), read
    through a DBAPI (psycopg2) connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('alembic_version')")
        if cursor.fetchone()[0] is None:
            return None
        cursor.execute("SELECT version_num FROM alembic_version")
        row = cursor.fetchone()
    return row and row[0]


def connect(url: str, timeout: int | None = None):
    """A psycopg2 connection to `url` whose schema is the one this code needs; DatabaseError,
    saying what to do, otherwise. Commands that need no engine use it, and never load SQLAlchemy."""
    import psycopg2
    options = {} if timeout is None else {"connect_timeout": timeout}
    try:
        connection = psycopg2.connect(libpq_url(url), **options)
    except psycopg2.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {first_line(exc)}") from None
    try:
        _require_current(connection)
        connection.rollback()
    except BaseException:
        connection.close()
        raise
    return connection


def check_schema(engine: sa.Engine) -> None:
    """Raise DatabaseError unless the schema is at the revision this code expects."""
    import sqlalchemy as sa
    try:
        with engine.connect() as connection:
            _require_current(connection.connection.dbapi_connection)
    except sa.exc.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {first_line(exc)}") from None


def _require_current(connection) -> None:
    """Raise DatabaseError unless the schema behind a DBAPI connection is this code's."""
    problem = schema_problem(current_revision(connection))
    if problem:
        raise DatabaseError(problem)


def schema_problem(current: str | None) -> str | None:
    """What is wrong with a schema at revision `current`, or None when it is the head."""
    head = head_revision()
    if current == head:
        return None
    return (f"the database schema is at revision {current or 'none'}, this version "
            f"needs {head}: run `archive-daemon db upgrade`")


@functools.cache
def head_revision() -> str:
    """The revision this code's migrations lead to (the one no other follows), read from their
    files once per process: a command that only checks the schema never imports alembic."""
    _present()
    revisions, followed = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        lines = dict((name, value or None) for name, value in _REVISION_LINE.findall(path.read_text()))
        revisions.add(lines["revision"])
        followed.add(lines.get("down_revision"))
    heads = revisions - followed
    if len(heads) != 1:
        raise DatabaseError(f"the schema migrations in {MIGRATIONS} lead to {len(heads)} revisions, not one: "
                            "reinstall the package")
    return heads.pop()


def check_schema_at(url: str) -> None:
    """check_schema through a connection of its own, closed afterwards."""
    connect(url, timeout=5).close()


def first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__
