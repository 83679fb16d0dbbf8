"""Search results as JSON, CSV or VOTable, chosen by `format=` or else the Accept header."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import falcon

CSV = "text/csv"
VOTABLE = "application/x-votable+xml"
BY_NAME = {"json": falcon.MEDIA_JSON, "csv": CSV, "votable": VOTABLE}
# Characters XML 1.0 cannot hold at all, not even escaped (a header may carry any of them).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def plain(value):
    """A value as JSON and CSV carry it."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def _cell(value) -> object:
    """A CSV cell; text that a spreadsheet would run as a formula (a header value such as
    OBJECT = '=HYPERLINK(...)' is anyone's to write) gets a leading apostrophe."""
    if value is None:
        return ""
    value = plain(value)
    return "'" + value if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def render(req: falcon.Request, resp: falcon.Response, fmt: str | None, fields: list[str],
           records: list[dict], envelope: dict) -> None:
    media = BY_NAME[fmt] if fmt else (req.client_prefers([falcon.MEDIA_JSON, CSV, VOTABLE]) or falcon.MEDIA_JSON)
    if media == CSV:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(fields)
        for record in records:
            writer.writerow([_cell(record[f]) for f in fields])
        resp.content_type = "text/csv; charset=utf-8"
        resp.text = out.getvalue()
    elif media == VOTABLE:
        resp.content_type = VOTABLE
        resp.data = _votable(fields, records)
    else:
        resp.media = {**envelope, "results": [{k: plain(v) for k, v in r.items()} for r in records]}
        return
    # CSV and VOTable carry the rest of the envelope in headers.
    if envelope.get("next"):
        resp.append_link(envelope["next"], "next")
    resp.set_header("X-Total-Count", str(envelope["count"]))
    resp.set_header("X-Count-Exact", "true" if envelope["count_exact"] else "false")


def _votable(fields: list[str], records: list[dict]) -> bytes:
    from astropy.io.votable import from_table
    from astropy.table import MaskedColumn, Table
    columns = []
    for name in fields:
        values = [xml_text(plain(r[name])) for r in records]
        sample = next((v for v in values if v is not None), "")
        fill = "" if isinstance(sample, str) else 0
        columns.append(MaskedColumn([fill if v is None else v for v in values], name=name,
                                    mask=[v is None for v in values],
                                    dtype=str if isinstance(sample, str) else None))
    table = Table(columns) if records else Table(names=fields)
    out = io.BytesIO()
    # astropy's C TABLEDATA writer corrupts the heap now and then (astropy issue 20419),
    # crashing the worker later at random; its Python writer is the one it falls back to.
    from_table(table).to_xml(out, _debug_python_based_parser=True)
    return out.getvalue()


def xml_text(value):
    """A string as a VOTable can carry it: U+FFFD for each character XML forbids."""
    return _NOT_XML.sub("\ufffd", value) if isinstance(value, str) else value
