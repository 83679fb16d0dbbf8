"""TAP 1.1 at /ivoa/tap: synchronous ADQL queries, and the VOSI resources (capabilities,
availability, tables) that let clients discover what the service offers.

Errors a caller can fix are DALI error VOTables with HTTP 400, whose message pyvo and
TOPCAT show; a database that does not answer is the same document with 503.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import falcon
import psycopg2
import sqlalchemy as sa

from archive_daemon import db
from archive_daemon.config import Config, IvoaConfig

from . import catalog, votable
from .query import QueryError, run_adql

log = logging.getLogger("api.ivoa")

LANGUAGES = ("adql", "adql-2.0", "adql-2.1")
# What ADQL's geometry offers here (TAPRegExt's adqlgeo features); tests run each of them.
GEOMETRY = ("POINT", "CIRCLE", "BOX", "POLYGON", "CONTAINS", "INTERSECTS", "DISTANCE", "AREA", "CENTROID",
            "COORD1", "COORD2", "COORDSYS")
_UNAVAILABLE = "the archive's database does not answer; try again shortly"


@dataclass(frozen=True)
class QueryParameters:
    query: str
    maxrec: int
    response_format: str
    run_id: str | None


def parameters(params: dict[str, list[str]], settings: IvoaConfig) -> QueryParameters:
    """A TAP query's parameters from {lower-case name: values}; QueryError names the bad one."""
    def one(name: str) -> str | None:
        values = params.get(name.lower(), [])
        if len(values) > 1:
            raise QueryError(f"{name}: given {len(values)} times; give it once")
        return values[0] if values else None

    request = one("REQUEST")
    if request is not None and request.lower() != "doquery":
        raise QueryError(f"REQUEST: {request!r} is not supported; use doQuery (or leave REQUEST out)")
    lang = one("LANG") or "ADQL"
    if lang.lower() not in LANGUAGES:
        raise QueryError(f"LANG: {lang!r} is not supported; use ADQL")
    if "upload" in params:
        raise QueryError("UPLOAD: this service does not take uploaded tables")
    query = one("QUERY")
    if not query or not query.strip():
        raise QueryError("QUERY: missing; give the ADQL query to run")
    maxrec = one("MAXREC")
    if maxrec is None or not maxrec.strip():
        limit = settings.default_maxrec
    else:
        try:
            limit = int(maxrec)
        except ValueError:
            raise QueryError(f"MAXREC: {maxrec!r} is not a whole number") from None
        if limit < 0:
            raise QueryError(f"MAXREC: {maxrec!r} is negative")
    response_format = one("RESPONSEFORMAT") or one("FORMAT")
    votable.format_of(response_format)
    return QueryParameters(query, min(limit, settings.max_maxrec), response_format or "votable", one("RUNID"))


def _error(resp: falcon.Response, message: str, status=falcon.HTTP_400) -> None:
    resp.status = status
    resp.content_type = votable.VOTABLE
    resp.data = votable.error_document(message)


def form_parameters(req: falcon.Request, max_body: int) -> dict[str, list[str]]:
    """Query string and form fields together, by lower-case name (DALI: names ignore case);
    a POSTed body over `max_body` bytes (api.max_body_bytes) is refused unread."""
    found: dict[str, list[str]] = {}

    def add(name: str, value) -> None:
        found.setdefault(name.lower(), []).extend(value if isinstance(value, list) else [value])
    for name, value in req.params.items():
        add(name, value)
    if req.method == "POST":
        if (req.content_length or 0) > max_body:
            raise QueryError(f"the request is larger than {max_body} bytes (api.max_body_bytes)")
        media_type = (req.content_type or "").split(";")[0].strip().lower()
        try:
            if media_type == falcon.MEDIA_URLENCODED:
                for name, value in req.get_media().items():
                    add(name, value)
            elif media_type == falcon.MEDIA_MULTIPART:
                for part in req.get_media():
                    add(part.name, part.get_text())
        except falcon.MediaMalformedError:
            raise QueryError(f"the request's body is not valid {media_type}") from None
    return found


class Sync:
    """/ivoa/tap/sync: run one query, answer its rows."""

    def __init__(self, config: Config):
        self.settings = config.ivoa
        self.max_body = config.api.max_body_bytes

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            asked = parameters(form_parameters(req, self.max_body), self.settings)
            result = run_adql(req.context.connection, req.context.principals, asked.query, maxrec=asked.maxrec,
                              timeout=self.settings.sync_timeout, base_url=req.prefix,
                              authority=self.settings.authority)
        except QueryError as exc:
            return _error(resp, str(exc))
        except (psycopg2.OperationalError, sa.exc.OperationalError, sa.exc.TimeoutError) as exc:
            log.warning("tap: database unavailable: %s", db.first_line(exc))
            return _error(resp, _UNAVAILABLE, falcon.HTTP_503)
        out = io.BytesIO()
        votable.write(result, out, asked.response_format, query=asked.query, run_id=asked.run_id)
        resp.content_type = votable.format_of(asked.response_format)[1]
        resp.data = out.getvalue()

    on_post = on_get


def _attributes(attributes: dict) -> str:
    return "".join(f" {key}={quoteattr(str(value))}" for key, value in attributes.items() if value is not None)


def _element(name: str, text, **attributes) -> str:
    """`<name a="v">text</name>`, or nothing when there is no text."""
    if text is None or text == "":
        return ""
    return f"<{name}{_attributes(attributes)}>{escape(str(text))}</{name}>"


_VOSI = ('xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:vr="http://www.ivoa.net/xml/VOResource/v1.0" '
         'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1"')


def _xml(resp: falcon.Response, document: str) -> None:
    resp.content_type = "application/xml"
    resp.data = ('<?xml version="1.0" encoding="UTF-8"?>\n' + document).encode()


def _interface(url: str, use: str, attributes: str = "") -> str:
    return (f'<interface xsi:type="vs:ParamHTTP"{attributes}>'
            f'{_element("accessURL", url, use=use)}</interface>')


class Capabilities:
    """/ivoa/tap/capabilities (VOSI): TAP 1.1 with ADQL and its limits, and the VOSI resources."""

    def __init__(self, config: Config):
        self.settings = config.ivoa

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        base = req.prefix + "/ivoa/tap"
        s = self.settings
        features = "".join(f"<feature><form>{name}</form></feature>" for name in GEOMETRY)
        formats = "".join(
            f'<outputFormat{_attributes({"ivo-id": ivo_id})}>{_element("mime", mime)}{_element("alias", alias)}'
            '</outputFormat>'
            for mime, alias, ivo_id in ((votable.VOTABLE, "votable", "ivo://ivoa.net/std/TAPRegExt#output-votable-td"),
                                        (votable.CSV, "csv", None)))
        tap = (
            '<capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">'
            + _interface(base, "base", ' role="std" version="1.1"')
            + '<dataModel ivo-id="ivo://ivoa.net/std/ObsCore#core-1.1">ObsCore-1.1</dataModel>'
            '<language><name>ADQL</name><version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>'
            '<description>ADQL 2.0, translated to PostgreSQL with pg_sphere</description>'
            f'<languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adqlgeo">{features}</languageFeatures>'
            f'</language>{formats}'
            f'<retentionPeriod><default>{round(s.async_destruction)}</default>'
            f'<hard>{round(s.async_destruction)}</hard></retentionPeriod>'
            f'<executionDuration><default>{round(s.async_duration)}</default>'
            f'<hard>{round(s.async_duration)}</hard></executionDuration>'
            f'<outputLimit><default unit="row">{s.default_maxrec}</default>'
            f'<hard unit="row">{s.max_maxrec}</hard></outputLimit></capability>')
        vosi = "".join(f'<capability standardID="ivo://ivoa.net/std/VOSI#{standard}">'
                       f'{_interface(f"{base}/{path}", "full")}</capability>'
                       for standard, path in (("capabilities", "capabilities"), ("availability", "availability"),
                                              ("tables-1.1", "tables")))
        _xml(resp, f'<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" {_VOSI} '
                   f'xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">{tap}{vosi}</vosi:capabilities>\n')


def _column(column: catalog.Column) -> str:
    flags = "".join(f"<flag>{flag}</flag>" for flag, set_ in (("indexed", column.indexed),
                                                                ("primary", column.principal)) if set_)
    datatype = _element("dataType", column.datatype, **{"xsi:type": "vs:VOTableType"}, arraysize=column.arraysize,
                        extendedType=column.xtype)
    return (f'<column std="{"true" if column.std else "false"}">{_element("name", column.name)}'
            f'{_element("description", column.description)}{_element("unit", column.unit)}'
            f'{_element("ucd", column.ucd)}{_element("utype", column.utype)}{datatype}{flags}</column>')


def _foreign_key(key: catalog.ForeignKey) -> str:
    pairs = "".join(f"<fkColumn>{_element('fromColumn', source)}{_element('targetColumn', target)}</fkColumn>"
                    for source, target in key.columns)
    return (f"<foreignKey>{_element('targetTable', key.target_table)}{pairs}"
            f"{_element('description', key.description)}{_element('utype', key.utype)}</foreignKey>")


def _table(table: catalog.Table, detail: bool, element: str = "table", namespaces: str = "") -> str:
    kind = "base_table" if table.table_type == "table" else table.table_type
    inner = "".join(_column(c) for c in table.columns) + "".join(_foreign_key(k) for k in table.foreign_keys)
    return (f'<{element}{namespaces} type="{kind}">{_element("name", table.name)}'
            f'{_element("description", table.description)}{_element("utype", table.utype)}'
            f'{inner if detail else ""}</{element}>')


class Tables:
    """/ivoa/tap/tables (VOSI 1.1): the published schemas, tables, columns and foreign keys;
    ?detail=min leaves columns out; /tables/{name} is one table."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        detail = (req.get_param("detail") or "").lower() != "min"
        schemas = "".join(f'<schema>{_element("name", s.name)}{_element("description", s.description)}'
                          f'{_element("utype", s.utype)}{"".join(_table(t, detail) for t in s.tables)}</schema>'
                          for s in catalog.load(req.context.connection).schemas)
        _xml(resp, f'<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" {_VOSI}>'
                   f'{schemas}</vosi:tableset>\n')

    def on_get_table(self, req: falcon.Request, resp: falcon.Response, table_name: str) -> None:
        table = catalog.load(req.context.connection).table(table_name)
        if table is None:
            raise falcon.HTTPNotFound(title="No such table", description=f"{table_name!r} is not published here")
        _xml(resp, _table(table, True, "vosi:table",
                          f' xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" {_VOSI}') + "\n")
