"""Simple Cone Search 1.03 at /ivoa/scs: the files whose position lies in a cone, one row
each from ivoa.obscore, as the caller may see them.

SCS predates DALI and answers in its own ways: the three columns it requires carry UCD1
words (ID_MAIN, POS_EQ_RA_MAIN, POS_EQ_DEC_MAIN), VERB chooses how many columns come, and a
mistake is a VOTable holding an INFO named Error, with HTTP status 200 (SCS 1.03 section 2
and its errata). Rows are capped as DALI's MAXREC would cap them (ivoa.default_maxrec, at
most ivoa.max_maxrec), the cut said by an OVERFLOW status after the table.
"""

from __future__ import annotations

import dataclasses
import io
from xml.sax.saxutils import quoteattr

import falcon
import psycopg2.errors

from archive_daemon.config import Config

from . import obscore
from .dalparams import UsageFault, collect, latitude, longitude, maxrec, number, single
from .votable import write

CONTENT_TYPE = "text/xml;content=x-votable"  # SCS 1.03's; application/x-votable+xml is DALI's
# The columns SCS requires, as ObsCore has them, and the UCD1 word SCS knows each by.
UCD1 = {"obs_publisher_did": "ID_MAIN", "s_ra": "POS_EQ_RA_MAIN", "s_dec": "POS_EQ_DEC_MAIN"}
TERSE = ("obs_publisher_did", "s_ra", "s_dec", "access_url", "t_min", "target_name")
CONE = "archive_point @ scircle(spoint(radians(%s), radians(%s)), radians(%s))"


class ConeSearch:
    def __init__(self, config: Config):
        self.config = config

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE
        try:
            (ra, dec, radius), verb, rows = self._read(req)
        except UsageFault as exc:
            resp.data = error_document(str(exc))
            return
        try:
            with obscore.cursor(req, self.config.ivoa) as cursor:
                result = obscore.select(cursor, _columns(cursor, verb), CONE, [ra, dec, radius],
                                        rows if radius > 0 else 0)
        except psycopg2.errors.QueryCanceled:
            resp.data = error_document(f"the search ran longer than {self.config.ivoa.sync_timeout:g} s: "
                                       "a smaller SR finishes sooner")
            return
        result.fields = [dataclasses.replace(f, ucd=UCD1.get(f.name, f.ucd)) for f in result.fields]
        out = io.BytesIO()
        write(result, out, "votable")
        resp.data = out.getvalue()

    def _read(self, req: falcon.Request):
        params = collect(req, self.config.api.max_body_bytes)
        ra = longitude("RA", _required(params, "RA"))
        dec = latitude("DEC", _required(params, "DEC"))
        radius = _required(params, "SR")
        if radius < 0 or radius > self.config.api.max_radius_deg:
            raise UsageFault("SR", f"{radius:g} degrees: the radius must be 0 (the columns only) to "
                                   f"{self.config.api.max_radius_deg:g} degrees (api.max_radius_deg)")
        verb = single(params, "VERB") or "2"
        if verb not in ("1", "2", "3"):
            raise UsageFault("VERB", f"{verb[:40]!r}: 1 (fewest columns), 2 or 3 (all)")
        return (ra, dec, radius), int(verb), maxrec(params, self.config.ivoa.default_maxrec, self.config.ivoa.max_maxrec)


def _required(params: dict[str, list[str]], name: str) -> float:
    text = single(params, name)
    if text is None:
        raise UsageFault(name, "missing: RA, DEC and SR are required (decimal degrees, ICRS)")
    return number(name, text)


def _columns(cursor, verb: int) -> list[str]:
    """VERB=1: the fewest columns worth having; 2: ObsCore's principal ones; 3: all."""
    columns = obscore.columns(cursor.connection)
    if verb == 1:
        return [c.name for c in columns if c.name in TERSE]
    return [c.name for c in columns if verb == 3 or c.principal]


def error_document(message: str) -> bytes:
    """SCS's error answer: an INFO named Error below VOTABLE, where SCS 1.03 prefers it."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
            f'<INFO ID="Error" name="Error" value={quoteattr(message)}/>\n'
            '<RESOURCE type="results"/>\n</VOTABLE>\n').encode()
