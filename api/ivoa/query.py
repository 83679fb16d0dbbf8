"""One ADQL query, run on the published tables: translated, executed as the ADQL role,
at most MAXREC rows kept, its values made what a VOTable carries.

Used by the sync endpoint and by asynchronous jobs alike.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

import psycopg2
import psycopg2.errors

from . import catalog
from .adql import AdqlError, Published, translate
from .session import published


# What one result may hold, written out: its copies (rows, converted values, the document)
# must fit in a worker's memory, whatever a query joins to what.
MAX_RESULT_CHARACTERS = 200_000_000
_BATCH = 2000

class QueryError(ValueError):
    """The caller's query cannot run as asked; str() is the message for them."""


@dataclass(frozen=True)
class Field:
    """VOTable FIELD metadata of one output column."""
    name: str
    datatype: str
    arraysize: str | None = None
    xtype: str | None = None
    unit: str | None = None
    ucd: str | None = None
    utype: str | None = None
    description: str | None = None


@dataclass
class Result:
    fields: list[Field]
    rows: list[tuple]  # values as the writers take them: None, bool, int, float, str, tuple of floats
    overflow: bool     # more rows than MAXREC existed


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _degrees(text: str) -> tuple[float, ...]:
    """pg_sphere's text of a point, circle or polygon (radians, its default output, the
    only one that needs no session setting) as DALI's list of degrees: every number of
    each is an angle, in DALI's order (long, lat pairs; a circle's radius last)."""
    # pg_sphere writes 15 significant digits; a 15th digit of the degrees would be noise.
    return tuple(float(f"{math.degrees(float(n)):.14g}") for n in _NUMBER.findall(text))


def _box(text: str) -> tuple[float, ...]:
    """pg_sphere's box (two corners) as a DALI polygon of four."""
    west, south, east, north = _degrees(text)
    return (west, south, east, south, east, north, west, north)


# pg_sphere type -> (DALI xtype, arraysize, conversion of its text to DALI's list of degrees)
_SHAPES = {"spoint": ("point", "2", _degrees), "scircle": ("circle", "3", _degrees),
           "spoly": ("polygon", "*", _degrees), "sbox": ("polygon", "8", _box)}
_STC_S = {"point": "Position", "circle": "Circle", "polygon": "Polygon"}


def _region(shape: str, degrees):
    """The conversion to the STC-S strings of a column declared as ADQL's REGION (char),
    as ObsCore's s_region is."""
    return lambda text: f"{_STC_S[shape]} ICRS " + " ".join(repr(v) for v in degrees(text))


def _timestamp(value: dt.datetime | dt.date) -> str:
    """DALI timestamp: ISO 8601, UTC, no zone suffix."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value.isoformat()


# PostgreSQL built-in type OID -> (VOTable datatype, arraysize, xtype, value conversion)
_TEXT = ("char", "*", None, None)
_TYPES = {
    16: ("boolean", None, None, None), 21: ("short", None, None, None), 23: ("int", None, None, None),
    20: ("long", None, None, None), 700: ("float", None, None, None), 701: ("double", None, None, None),
    1700: ("double", None, None, float),
    25: _TEXT, 1043: _TEXT, 1042: _TEXT, 19: _TEXT, 18: _TEXT,
    1184: ("char", "*", "timestamp", _timestamp), 1114: ("char", "*", "timestamp", _timestamp),
    1082: ("char", "*", "timestamp", _timestamp),
}


def _column(description, known: catalog.Catalog) -> tuple[Field, object]:
    """The FIELD of a result column and the conversion of its values (None: as they come)."""
    shape = _SHAPES.get(known.sphere_types.get(description.type_code))
    if shape:
        xtype, arraysize, convert = shape
        datatype = "double"
    else:
        # Types without a VOTable counterpart (arrays, intervals, ...) travel as their text.
        datatype, arraysize, xtype, convert = _TYPES.get(description.type_code, ("char", "*", None, str))
    origin = known.origins.get((description.table_oid, description.table_column))
    if origin is None:
        return Field(description.name, datatype, arraysize, xtype), convert
    # A published column, perhaps renamed: its description holds.
    if shape and origin.datatype == "char":
        convert = _region(xtype, convert)
    return Field(description.name, origin.datatype, origin.arraysize, origin.xtype, origin.unit,
                 origin.ucd, origin.utype, origin.description), convert


def _message(exc: psycopg2.Error) -> str:
    text = exc.diag.message_primary or (exc.pgerror or str(exc)).strip().splitlines()[0]
    return f"the database refused the query: {text}"


def statement(connection, adql: str, maxrec: int) -> str:
    """The SQL that run_adql executes for `adql`: its translation, MAXREC+1 rows at most
    (the one more tells whether there were more; as a LIMIT, the planner knows it too)."""
    known = catalog.load(connection)
    try:
        sql = translate(adql, Published(known.columns_by_table()))
    except AdqlError as exc:
        raise QueryError(str(exc)) from None
    return f"SELECT * FROM (\n{sql}\n) AS adql_query LIMIT {int(maxrec) + 1}"


def run_adql(connection, principals: list[str], adql: str, *, maxrec: int, timeout: float,
             base_url: str, authority: str) -> Result:
    """Run `adql` as the caller with `principals`; at most `maxrec` rows come back.

    Raises QueryError for anything the query's author can fix; psycopg2.OperationalError
    when the database itself fails."""
    sql = statement(connection, adql, maxrec)
    known = catalog.load(connection)
    with published(connection, principals, base_url=base_url, authority=authority, timeout=timeout) as cursor:
        try:
            # A cursor on the server: rows arrive in batches, and a result too large is stopped
            # before it is all in this process's memory.
            rows = cursor.connection.cursor(name="adql_query")
            rows.execute(sql)  # no parameters: psycopg2 would take the query's % signs for placeholders
            return result(rows, known, maxrec)
        except psycopg2.errors.QueryCanceled:
            raise QueryError(f"the query ran longer than its limit of {timeout:g} s") from None
        except psycopg2.OperationalError:
            raise
        except psycopg2.Error as exc:
            raise QueryError(_message(exc)) from None


def result(cursor, known: catalog.Catalog, maxrec: int) -> Result:
    """The rows of an executed statement that fetched up to `maxrec` + 1 of them, as a Result:
    values in VOTable form, FIELDs described as TAP_SCHEMA says, overflow flagged. A result
    whose values add up to more than MAX_RESULT_CHARACTERS is refused (QueryError)."""
    rows: list[tuple] = []
    size = 0
    while batch := cursor.fetchmany(_BATCH):
        rows.extend(batch)
        size += sum(len(str(value)) for row in batch for value in row if value is not None)
        if size > MAX_RESULT_CHARACTERS:
            raise QueryError(f"the result is larger than {MAX_RESULT_CHARACTERS // 10**6} million characters: "
                             "ask for fewer columns or rows (MAXREC)")
    columns = [_column(d, known) for d in cursor.description]
    converts = [(i, convert) for i, (_, convert) in enumerate(columns) if convert is not None]
    if converts:
        rows = [_converted(row, converts) for row in rows]
    return Result(fields=[field for field, _ in columns], rows=rows[:maxrec], overflow=len(rows) > maxrec)


def _converted(row: tuple, converts) -> tuple:
    values = list(row)
    for i, convert in converts:
        if values[i] is not None:
            values[i] = convert(values[i])
    return tuple(values)
