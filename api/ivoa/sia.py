"""SIAv2 at /ivoa/sia2: /query finds files by position, band, time and the other SIA 2.0
parameters (siaquery.py) and answers with their ivoa.obscore rows, as the caller may see
them; /capabilities and /availability are VOSI's.

Answers are DALI's: a VOTable with QUERY_STATUS, OVERFLOW after the table when MAXREC cut
it short (MAXREC=0: the columns only), and a mistake an error VOTable, HTTP 400, whose
message starts with SIA's UsageFault and names the parameter.
"""

from __future__ import annotations

import io

import falcon
import psycopg2.errors

from archive_daemon.config import Config

from . import obscore
from .dalparams import UsageFault, collect, maxrec, single
from .query import QueryError
from .siaquery import condition
from .votable import VOTABLE, error_document, format_of, write

QUERY_STANDARD = "ivo://ivoa.net/std/SIA#query-2.0"
BASE = "/ivoa/sia2"


class Sia2Query:
    def __init__(self, config: Config):
        self.config = config

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            params = collect(req, self.config.api.max_body_bytes)
            _votable_asked(single(params, "RESPONSEFORMAT"))
            found = condition(params)
            rows = maxrec(params, self.config.ivoa.default_maxrec, self.config.ivoa.max_maxrec)
            with obscore.cursor(req, self.config.ivoa) as cursor:
                _check_polygons(cursor, found.polygons)
                names = [c.name for c in obscore.columns(cursor.connection)]
                result = obscore.select(cursor, names, found.sql, found.args, rows)
        except UsageFault as exc:
            return _error(resp, falcon.HTTP_400, f"UsageFault: {exc}")
        except psycopg2.errors.QueryCanceled:
            return _error(resp, falcon.HTTP_503, f"TransientFault: the search ran longer than "
                                                 f"{self.config.ivoa.sync_timeout:g} s; narrow it")
        out = io.BytesIO()
        write(result, out, "votable")
        resp.content_type = VOTABLE
        resp.data = out.getvalue()

    on_post = on_get


def _votable_asked(response_format: str | None) -> None:
    try:
        offered = response_format is None or format_of(response_format)[0] == "votable"
    except QueryError:
        offered = False
    if not offered:
        raise UsageFault("RESPONSEFORMAT", f"{response_format[:40]!r}: this service answers in VOTable only")


def _check_polygons(cursor, polygons: list[str]) -> None:
    """pgsphere refuses some polygons (edges that cross, or span half the sky): say so of POS."""
    for polygon in polygons:
        try:
            cursor.execute("SELECT %s::spoly", (polygon,))
        except (psycopg2.errors.InternalError_, psycopg2.errors.DataError) as exc:
            reason = (exc.diag.message_primary or "").partition(": ")[2] or "not a polygon pgsphere takes"
            raise UsageFault("POS", f"a POLYGON pgsphere cannot take ({reason}): its edges must not "
                                    "cross, and it must cover less than half the sky") from None


def _error(resp: falcon.Response, status: str, message: str) -> None:
    resp.status = status
    resp.content_type = VOTABLE
    resp.data = error_document(message)
