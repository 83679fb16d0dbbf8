"""Searches of ivoa.obscore by parameters, for SCS and SIA: one statement through the
published session (the caller's principals, read-only, ivoa.sync_timeout), at most MAXREC
rows, the values and FIELD metadata made as for a TAP query's result.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import falcon

from archive_daemon.config import IvoaConfig

from . import catalog
from .query import Result, result
from .session import published

TABLE = "ivoa.obscore"


def columns(connection) -> tuple[catalog.Column, ...]:
    """ivoa.obscore's columns as TAP_SCHEMA describes them, in its order."""
    return catalog.load(connection).table(TABLE).columns


@contextlib.contextmanager
def cursor(req: falcon.Request, ivoa: IvoaConfig) -> Iterator:
    """A cursor on the published tables as the request's caller sees them."""
    catalog.load(req.context.connection)  # first: reading it the first time ends any transaction
    with published(req.context.connection, req.context.principals, base_url=req.prefix,
                   authority=ivoa.authority, timeout=ivoa.sync_timeout) as opened:
        yield opened


def select(opened, names: list[str], where: str, args: list, maxrec: int) -> Result:
    """The `names` columns of the rows meeting `where`: at most `maxrec` of them, the result
    saying whether there were more; none at all for `maxrec` 0 (the metadata only, no overflow)."""
    opened.execute(f"SELECT {', '.join(names)} FROM {TABLE} WHERE {where} LIMIT %s",
                   [*args, maxrec + 1 if maxrec else 0])
    return result(opened, catalog.load(opened.connection), maxrec)
