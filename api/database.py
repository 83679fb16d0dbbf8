"""A request's database connections, each taken from its pool when the request first needs
it and given back when the response is ready.

`req.context.connection` is for reading: from the replica (`database.read_url`) while it
keeps up with the primary (replica.py), else from the primary. Every search, look-up and
token check uses it, so all of them honour `database.max_replica_lag` and nothing more.
`req.context.primary` is for writing, and for reading what a request has just written (a
replica may not hold it yet); nothing reads files or grants through it.

Taken lazily, so that a request busy with something else first (a tar download waiting for
its body from a slow client) holds no connection meanwhile: the pools are small by design
(api.db_pool_size) and searches and health checks must always find one.
"""

from __future__ import annotations

import falcon
import psycopg2
import sqlalchemy as sa

from .replica import Replica

READ_FROM_HEADER = "X-Archive-Read-From"  # replica or primary: which database answered the request's reads


class Context(falcon.Context):
    """`req.context` of the archive's requests: `connection` and `primary`, checked out on first use."""

    engine: sa.Engine = None       # the primary
    replica: Replica | None = None
    read_from: str | None = None   # "replica" or "primary", once `connection` is taken
    _connection = None
    _primary = None

    @property
    def connection(self):
        """A psycopg2 connection for reads, from the replica while it may answer."""
        if self._connection is None:
            self._connection, self.read_from = self._reader()
        return self._connection

    def _reader(self):
        if self.replica is not None and self.replica.usable():
            try:
                return self.replica.engine.raw_connection(), "replica"
            except (psycopg2.OperationalError, sa.exc.OperationalError) as exc:  # down since the last check
                # This request reads the primary, and so do the next ones until a check finds it back.
                self.replica.unreachable(exc)
        return self.engine.raw_connection(), "primary"

    @property
    def primary(self):
        """A psycopg2 connection to the primary, for writes."""
        if self._primary is None:
            self._primary = self.engine.raw_connection()
        return self._primary


class Request(falcon.Request):
    context_type = Context


class Connection:
    """Middleware: hands each request the databases, takes its connections back, and says
    which database answered its reads."""

    def __init__(self, engine: sa.Engine, replica: Replica | None = None):
        self.engine = engine
        self.replica = replica

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.engine = self.engine
        req.context.replica = self.replica

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool) -> None:
        if req.context.read_from:
            resp.set_header(READ_FROM_HEADER, req.context.read_from)
        for name in ("_connection", "_primary"):
            connection = getattr(req.context, name)
            if connection is not None:
                # Back to the pool, which rolls back on return; a connection lost mid-request is
                # discarded there rather than raising here, after a download body was handed over.
                setattr(req.context, name, None)
                connection.close()
