"""One pooled database connection per request, given back when the response is ready."""

from __future__ import annotations

import falcon


class Connection:
    """Middleware: `req.context.connection`, a psycopg2 connection, read-only in intent."""

    def __init__(self, engine):
        self.engine = engine

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.connection = self.engine.raw_connection()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool) -> None:
        connection = getattr(req.context, "connection", None)
        if connection is not None:
            # Back to the pool, which rolls back on return; a connection lost mid-request is
            # discarded there rather than raising here, after a download body was handed over.
            req.context.connection = None
            connection.close()
