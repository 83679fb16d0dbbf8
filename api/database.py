"""One pooled database connection per request, taken when the request first needs it and
given back when the response is ready.

Taken lazily, so that a request busy with something else first (a tar download waiting for
its body from a slow client) holds no connection meanwhile: the pool is small by design
(api.db_pool_size) and searches and health checks must always find one.
"""

from __future__ import annotations

import falcon


class Context(falcon.Context):
    """`req.context` of the archive's requests: `connection` is checked out on first use."""

    engine = None
    _connection = None

    @property
    def connection(self):
        if self._connection is None:
            self._connection = self.engine.raw_connection()
        return self._connection


class Request(falcon.Request):
    context_type = Context


class Connection:
    """Middleware: `req.context.connection`, a psycopg2 connection, read-only in intent."""

    def __init__(self, engine):
        self.engine = engine

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.engine = self.engine

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool) -> None:
        connection = req.context._connection
        if connection is not None:
            # Back to the pool, which rolls back on return; a connection lost mid-request is
            # discarded there rather than raising here, after a download body was handed over.
            req.context._connection = None
            connection.close()
