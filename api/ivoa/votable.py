"""Query results as the IVOA services answer them: VOTable (TABLEDATA) or CSV, and DALI's
error document.

The XML is written here rather than by astropy: a result streams out row by row with the
QUERY_STATUS INFOs where DALI puts them, and astropy's fast TABLEDATA writer is unsafe
(see api/formats.py).
"""

from __future__ import annotations

import csv
import io
import math
import re

from ..formats import xml_text
from .query import Field, QueryError, Result

VOTABLE = "application/x-votable+xml"
CSV = "text/csv;header=present"
# RESPONSEFORMAT (TAP) / FORMAT values, lower case without blanks -> (name, content type)
FORMATS = {
    "votable": ("votable", VOTABLE), VOTABLE: ("votable", VOTABLE),
    VOTABLE + ";serialization=tabledata": ("votable", VOTABLE), "votable/td": ("votable", VOTABLE),
    "text/xml": ("votable", VOTABLE),
    "csv": ("csv", CSV), "text/csv": ("csv", CSV), CSV: ("csv", CSV),
}

_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
         '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"'
         ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
         ' xsi:schemaLocation="http://www.ivoa.net/xml/VOTable/v1.3 http://www.ivoa.net/xml/VOTable/v1.3">\n'
         '<RESOURCE type="results">\n')
_TAIL = "</RESOURCE>\n</VOTABLE>\n"
_BATCH = 1000  # rows per write


def format_of(value: str | None) -> tuple[str, str]:
    """(name, content type) of a RESPONSEFORMAT value; VOTable when none is given."""
    if value is None or not value.strip():
        return FORMATS["votable"]
    try:
        return FORMATS[re.sub(r"\s+", "", value).lower()]
    except KeyError:
        raise QueryError(f"RESPONSEFORMAT: {value!r} is not offered; use votable or csv") from None


def write(result: Result, stream, response_format: str, *, query: str | None = None,
          run_id: str | None = None) -> None:
    """Write `result` to the binary `stream` as `response_format` (any value FORMATS accepts);
    a VOTable names the query and the caller's RUNID (DALI) in INFOs."""
    if format_of(response_format)[0] == "csv":
        _write_csv(result, stream)
    else:
        _write_votable(result, stream, {"QUERY": query, "RUNID": run_id})


def error_document(message: str) -> bytes:
    """DALI's error answer: a VOTable whose QUERY_STATUS is ERROR, the message its text."""
    return (_HEAD + f'<INFO name="QUERY_STATUS" value="ERROR">{_text(message)}</INFO>\n' + _TAIL).encode()


def _text(value: str) -> str:
    return xml_text(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attribute(value: str) -> str:
    # Line breaks and tabs escaped too: a parser would turn them into blanks.
    return '"' + _text(value).replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;") \
        .replace("\t", "&#9;") + '"'


def _ids(names: list[str]) -> list[str]:
    """XML IDs for the FIELDs, unique even where names repeat (a join selecting s_ra twice)."""
    ids, taken = [], set()
    for name in names:
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        base = base if re.match(r"[A-Za-z_]", base) else "_" + base
        candidate, n = base, 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{base}_{n}"
        taken.add(candidate.lower())
        ids.append(candidate)
    return ids


def _field(field: Field, field_id: str) -> str:
    attributes = {"name": field.name, "ID": field_id, "datatype": field.datatype, "arraysize": field.arraysize,
                  "xtype": field.xtype, "unit": field.unit, "ucd": field.ucd, "utype": field.utype}
    text = " ".join(f"{key}={_attribute(value)}" for key, value in attributes.items() if value)
    if field.description:
        return f"<FIELD {text}><DESCRIPTION>{_text(field.description)}</DESCRIPTION></FIELD>\n"
    return f"<FIELD {text}/>\n"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _value(value) -> str:
    """A value as TABLEDATA and CSV write it; NULL is empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, tuple):
        return " ".join(_number(v) for v in value)
    return str(value)


def _write_votable(result: Result, stream, infos: dict[str, str | None]) -> None:
    head = [_HEAD, '<INFO name="QUERY_STATUS" value="OK"/>\n']
    head += [f'<INFO name="{name}" value={_attribute(value)}/>\n' for name, value in infos.items() if value is not None]
    head.append("<TABLE>\n")
    head += [_field(f, i) for f, i in zip(result.fields, _ids([f.name for f in result.fields]))]
    head.append("<DATA><TABLEDATA>\n")
    stream.write("".join(head).encode())
    for start in range(0, len(result.rows), _BATCH):
        stream.write("".join("<TR>" + "".join(f"<TD>{_text(_value(v))}</TD>" for v in row) + "</TR>\n"
                             for row in result.rows[start:start + _BATCH]).encode())
    tail = "</TABLEDATA></DATA>\n</TABLE>\n"
    if result.overflow:  # DALI: after the table, so that a streaming reader learns it at the end
        tail += '<INFO name="QUERY_STATUS" value="OVERFLOW"/>\n'
    stream.write((tail + _TAIL).encode())


def _write_csv(result: Result, stream) -> None:
    rows = [[f.name for f in result.fields]] + result.rows
    for start in range(0, len(rows), _BATCH):
        text = io.StringIO()
        csv.writer(text).writerows([_value(v) for v in row] for row in rows[start:start + _BATCH])
        stream.write(text.getvalue().encode())
