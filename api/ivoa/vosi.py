"""VOSI 1.1 for the IVOA services: /capabilities (what a service offers, where) and
/availability (whether it can answer now, which is whether the database does).

A client such as pyvo finds a service's endpoints from its capabilities, so every
accessURL is absolute, built from the public prefix the request came through (proxy.py).
"""

from __future__ import annotations

import logging
from xml.sax.saxutils import escape

import falcon
import psycopg2
import sqlalchemy as sa

from archive_daemon import db

log = logging.getLogger("api.ivoa")

XML = "text/xml; charset=utf-8"
CAPABILITIES = "ivo://ivoa.net/std/VOSI#capabilities"
AVAILABILITY = "ivo://ivoa.net/std/VOSI#availability"


class Capabilities:
    """GET {base}/capabilities: VOSI's own two capabilities and `standards`
    ({standardID: path below the base, ...}), each with a ParamHTTP interface."""

    def __init__(self, base: str, standards: dict[str, tuple[str, str]]):
        self.base = base.rstrip("/")
        self.standards = {CAPABILITIES: ("capabilities", "1.0"), AVAILABILITY: ("availability", "1.0"), **standards}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        entries = []
        for standard, (path, version) in self.standards.items():
            role = "" if standard in (CAPABILITIES, AVAILABILITY) else ' role="std"'
            url = escape(f"{req.prefix}{self.base}/{path}")
            entries.append(f'  <capability standardID="{standard}">\n'
                           f'    <interface xsi:type="vs:ParamHTTP"{role} version="{version}">\n'
                           f'      <accessURL use="full">{url}</accessURL>\n'
                           f'    </interface>\n  </capability>\n')
        resp.content_type = XML
        resp.text = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                     '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0"'
                     ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
                     ' xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1">\n'
                     + "".join(entries) + "</vosi:capabilities>\n")


class Availability:
    """GET {base}/availability: available while the database answers."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            with req.context.connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            available, note = True, "the archive's database answers"
        except (psycopg2.Error, sa.exc.SQLAlchemyError) as exc:  # the pool's own failures too
            log.warning("availability: database unavailable: %s", db.first_line(exc))
            available, note = False, "the archive's database does not answer"
        resp.content_type = XML
        resp.text = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                     '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">\n'
                     f'  <vosi:available>{"true" if available else "false"}</vosi:available>\n'
                     f'  <vosi:note>{note}</vosi:note>\n</vosi:availability>\n')
