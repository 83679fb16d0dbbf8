"""The one way a query reaches the published tables (ivoa.obscore, archive.files, TAP_SCHEMA).

Whatever asks (TAP, SCS, SIA), the statement runs in a read-only transaction as the ADQL
role, which may read the published views and nothing else, with a statement timeout and
the caller's principals set for the transaction: the views apply the archive's one
visibility rule to them (migration 0007). The transaction is rolled back afterwards, so
nothing a query set outlives it.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from archive_daemon.store import array_literal

ADQL_ROLE = "archive_adql"
# Temporary files one query may write (a sort or hash spilling to disk): a cross join
# sorted by a long text could otherwise fill the database's disk within its time limit.
TEMP_FILES = "2GB"


@contextlib.contextmanager
def published(connection, principals: list[str], *, base_url: str, authority: str,
              timeout: float) -> Iterator:
    """A cursor on `connection` (psycopg2) that sees what `principals` may see."""
    connection.rollback()  # whatever the request did before starts no part of this
    cursor = connection.cursor()
    try:
        cursor.execute("SET TRANSACTION READ ONLY")
        cursor.execute("""SELECT set_config('statement_timeout', %s, true), set_config('temp_file_limit', %s, true),
                                 set_config('archive.principals', %s, true),
                                 set_config('archive.base_url', %s, true), set_config('archive.authority', %s, true)""",
                       (str(max(1, round(timeout * 1000))), TEMP_FILES, array_literal(principals), base_url.rstrip("/"),
                        authority))
        cursor.execute(f"SET LOCAL ROLE {ADQL_ROLE}")
        yield cursor
    finally:
        cursor.close()
        connection.rollback()

