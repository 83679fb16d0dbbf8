"""GET /api/v1/files: search, with keyset pagination, in JSON, CSV or VOTable.

Every query goes through archive_daemon.visibility.VISIBLE: a file the caller may not read
is not counted, not listed, not hinted at. Counts are exact up to api.exact_count_limit and
estimated beyond it (api/counts.py).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import urllib.parse

import falcon

from archive_daemon.config import ApiConfig
from archive_daemon.store import prefix_clause
from archive_daemon.visibility import VISIBLE

from . import counts
from .formats import render
from .params import ID_MAX, Params, bad, unfit_character

# Public name -> SQL. Grants and headers are never listed here.
FIELDS = {name: f"f.{name}" for name in (
    "id", "root", "path", "size", "mtime", "night", "instrument", "telescope", "object", "obs_start",
    "obs_end", "exptime", "frame_type", "filter", "program", "ra", "dec", "public_date")}
# Sort keys with an index behind them.
SORTS = {"id": "f.id", "obs_start": "f.obs_start", "night": "f.night", "path": "f.path",
         "public_date": "f.public_date", "object": "lower(f.object)", "instrument": "lower(f.instrument)",
         "telescope": "lower(f.telescope)", "program": "f.program"}
EXACT = {"instrument": "lower(f.instrument)", "telescope": "lower(f.telescope)", "frame_type": "lower(f.frame_type)",
         "filter": "lower(f.filter)", "program": "f.program", "root": "f.root"}


# A host name or address, and a port (RFC 3986 reg-name, IP literal).
_NETLOC = re.compile(r"(?:[A-Za-z0-9._~%!$&'()*+,;=-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
# What a cursor's sort value must be, by sort key (the rest sort text).
_SORT_TYPES = {"id": "integer", "obs_start": "time", "public_date": "time", "night": "date"}


def _cursor_token(sort: str, value, last_id: int) -> str:
    """The sort the page was read in travels with the position, so that a cursor is only
    ever read back under the sort that made it."""
    if isinstance(value, (dt.date, dt.datetime)):
        value = value.isoformat()
    return base64.urlsafe_b64encode(json.dumps([sort, value, last_id]).encode()).decode().rstrip("=")


def _cursor_position(token: str, sort: str) -> tuple:
    """(sort value, id) from a cursor made under `sort`, typed for the database; else 400."""
    try:
        values = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, RecursionError):  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise bad("cursor", "not a cursor this API gave out") from None
    if not isinstance(values, list) or len(values) != 3 or not _is_id(values[2]):
        raise bad("cursor", "not a cursor this API gave out")
    made_for, value, last_id = values
    if made_for != sort:
        shown = made_for if isinstance(made_for, str) and not unfit_character(made_for) else "another sort"
        raise bad("cursor", f"was given out for sort={shown}, not sort={sort}: start again without a cursor")
    if value is None:
        return None, last_id
    try:
        return _typed(_SORT_TYPES.get(sort.lstrip("-"), "text"), value), last_id
    except (TypeError, ValueError, OverflowError):
        raise bad("cursor", "not a cursor this API gave out") from None


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= ID_MAX


def _typed(kind: str, value):
    if kind == "integer":
        if not _is_id(value):
            raise ValueError(value)
        return value
    if not isinstance(value, str) or unfit_character(value):
        raise ValueError(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "time":
        when = dt.datetime.fromisoformat(value)
        if when.tzinfo is None:
            raise ValueError(value)
        return when.astimezone(dt.timezone.utc)
    return value


class Query:
    """The WHERE clause of a search, built from its parameters."""

    def __init__(self, params: Params, settings: ApiConfig, principals: list[str]):
        self.clauses = [VISIBLE]
        self.args: dict = {"principals": principals}
        self.exact: dict[str, str] = {}  # EXACT name -> its clause, so facets can leave one out
        self.cone = False
        ra, dec = params.angle("ra", hours=True), params.angle("dec", hours=False)
        radius = params.radius("radius", settings.max_radius_deg)
        given = [n for n, v in (("ra", ra), ("dec", dec), ("radius", radius)) if v is not None]
        if given and len(given) != 3:
            missing = next(n for n in ("ra", "dec", "radius") if n not in given)
            raise bad(missing, "a cone search needs ra, dec and radius together")
        if given:
            self.add("f.pos <@ scircle(spoint(radians(%(ra)s), radians(%(dec)s)), radians(%(radius)s))",
                     ra=ra, dec=dec, radius=radius)
            self.cone = True
        start, end = params.time("start"), params.time("end")
        if start and end and end < start:
            raise bad("end", "is before start")
        if start:
            self.add("f.obs_start >= %(start)s", start=start)
        if end:
            self.add("f.obs_start < %(end)s", end=end)
        night = params.date("night")
        if night:
            self.add("f.night = %(night)s", night=night)
        obj = params.text("object")
        match = params.choice("object_match", "exact", ("exact", "prefix", "contains"))
        if obj:
            pattern = obj.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            if match == "exact":
                self.add("lower(f.object) = %(object)s", object=obj.lower())
            elif match == "prefix":
                self.add("lower(f.object) LIKE %(object)s", object=pattern + "%")
            else:
                self.add("lower(f.object) LIKE %(object)s", object="%" + pattern + "%")
        for name, column in EXACT.items():
            value = params.text(name)
            if value is not None:
                self.exact[name] = f"{column} = %({name})s"
                self.add(self.exact[name], **{name: value if name in ("program", "root") else value.lower()})
        prefix = params.text("path")
        if prefix:
            clause, prefix_params = prefix_clause(prefix, "f.path")
            self.add(clause, **prefix_params)
        low, high = params.number("exptime_min"), params.number("exptime_max")
        if low is not None:
            self.add("f.exptime >= %(exptime_min)s", exptime_min=low)
        if high is not None:
            self.add("f.exptime <= %(exptime_max)s", exptime_max=high)

    def add(self, clause: str, **args) -> None:
        self.clauses.append(clause)
        self.args.update(args)

    @property
    def where(self) -> str:
        return " AND ".join(self.clauses)

    def where_without(self, name: str) -> str:
        """The WHERE clause without the exact match on `name` (still visible files only)."""
        return " AND ".join(c for c in self.clauses if c != self.exact.get(name))


def page(cursor, query: Query, fields: list[str], sort: str, descending: bool, position: tuple | None,
         limit: int) -> list[tuple]:
    """Up to `limit` rows of `fields` after `position` (a cursor's), each followed by its sort
    value and id."""
    where, args = query.where, dict(query.args)
    if position is not None:
        where += " AND " + _after(sort, descending, position, args)
    direction = "DESC" if descending else "ASC"
    columns = ", ".join(FIELDS[f] for f in fields)
    select = f"SELECT {columns}, {SORTS[sort]}, f.id FROM files f WHERE {where}"
    order = f"{len(fields) + 1} {direction} NULLS LAST, {len(fields) + 2} {direction} LIMIT %(limit)s"
    if query.cone:
        # pg_sphere takes every cone for a thousandth of the table, so at millions of rows the
        # planner would walk the sort key's index through the whole table to fill a page. A
        # cone holds few files (a tiny part of the sky): find them all, then sort them.
        cursor.execute(f"WITH cone AS MATERIALIZED ({select}) SELECT * FROM cone ORDER BY {order}",
                       {**args, "limit": limit})
    else:
        cursor.execute(f"{select} ORDER BY {order}", {**args, "limit": limit})
    return cursor.fetchall()


def _after(sort: str, descending: bool, position: tuple, args: dict) -> str:
    column, (value, last_id) = SORTS[sort], position
    args.update(after_value=value, after_id=last_id)
    beyond = "<" if descending else ">"
    if value is None:  # the NULLs come last: only the rest of them
        return f"({column} IS NULL AND f.id {beyond} %(after_id)s)"
    return (f"({column} {beyond} %(after_value)s OR ({column} = %(after_value)s AND f.id {beyond} %(after_id)s)"
            f" OR {column} IS NULL)")


class Files:
    """The search resource."""

    def __init__(self, settings: ApiConfig):
        self.settings = settings

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = Params(req)
        query = Query(params, self.settings, req.context.principals)
        count_only = params.boolean("count")
        fields = self._fields(params)
        descending, sort = self._sort(params)
        sort_text = ("-" if descending else "") + sort
        limit = params.integer("limit", self.settings.default_limit, 1, self.settings.max_limit)
        cursor = params.text("cursor")
        fmt = params.choice("format", None, ("json", "csv", "votable"))
        params.done()
        position = _cursor_position(cursor, sort_text) if cursor else None
        connection = req.context.connection
        with connection.cursor() as db:
            count, exact = counts.count(db, query.where, query.args, self.settings.exact_count_limit)
            if count_only:
                resp.media = {"count": count, "count_exact": exact}
                return
            rows = page(db, query, fields, sort, descending, position, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        following = None
        if more:
            following = self._url(req, _cursor_token(sort_text, rows[-1][-2], rows[-1][-1]))
        records = [dict(zip(fields, row[:len(fields)])) for row in rows]
        render(req, resp, fmt, fields, records, {"count": count, "count_exact": exact, "next": following})

    def _fields(self, params: Params) -> list[str]:
        text = params.text("fields")
        if text is None:
            return list(FIELDS)
        fields = [f.strip() for f in text.split(",") if f.strip()]
        unknown = [f for f in fields if f not in FIELDS]
        if unknown or not fields:
            raise bad("fields", f"unknown field {unknown[0]!r} (known: {', '.join(FIELDS)})" if unknown else "is empty")
        # A field named twice is shown once (a VOTable cannot hold two columns of one name).
        fields = list(dict.fromkeys(fields))
        return fields if "id" in fields else ["id", *fields]

    def _sort(self, params: Params) -> tuple[bool, str]:
        text = params.text("sort", "obs_start")
        descending = text.startswith("-")
        name = text[1:] if descending else text
        if name not in SORTS:
            raise bad("sort", f"cannot sort by {name!r} (one of {', '.join(SORTS)}, '-' first for descending)")
        return descending, name

    def _url(self, req: falcon.Request, token: str) -> str:
        # The next link goes in a Link header as <URL>: a Host that is no host name (a '>',
        # a quote) would break out of it.
        if not _NETLOC.fullmatch(req.netloc):
            raise falcon.HTTPBadRequest(title="Invalid header 'Host'", description="Host: not a host name and port")
        query = {k: v for k, v in req.params.items() if k != "cursor"}
        query["cursor"] = token
        return f"{req.prefix}{req.path}?{urllib.parse.urlencode(query)}"
