"""What the TAP service publishes, read back from TAP_SCHEMA (filled by migration 0007 from
the one description of the published tables).

From it come the ADQL allow-list of tables and columns, the VOTable FIELD metadata of
query results, and the VOSI /tables document. TAP_SCHEMA changes only with a migration, so
it is read once per process and database.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Mapping

from .adql import SQL_SCHEMAS
from .session import published


@dataclass(frozen=True)
class Column:
    name: str
    datatype: str
    arraysize: str | None
    xtype: str | None
    unit: str | None
    ucd: str | None
    utype: str | None
    description: str | None
    principal: bool
    indexed: bool
    std: bool


@dataclass(frozen=True)
class ForeignKey:
    key_id: str
    target_table: str
    columns: tuple[tuple[str, str], ...]  # (from_column, target_column)
    description: str | None
    utype: str | None


@dataclass(frozen=True)
class Table:
    name: str  # qualified, as ADQL and TAP_SCHEMA spell it: ivoa.obscore, TAP_SCHEMA.columns
    table_type: str
    utype: str | None
    description: str | None
    columns: tuple[Column, ...]
    foreign_keys: tuple[ForeignKey, ...]


@dataclass(frozen=True)
class Schema:
    name: str
    utype: str | None
    description: str | None
    tables: tuple[Table, ...]


@dataclass(frozen=True)
class Catalog:
    schemas: tuple[Schema, ...]
    origins: Mapping[tuple[int, int], Column]  # (relation OID, attribute number) -> published column
    sphere_types: Mapping[int, str]            # type OID -> name, of pg_sphere's types

    def tables(self) -> list[Table]:
        return [table for schema in self.schemas for table in schema.tables]

    def table(self, name: str) -> Table | None:
        """The table of that ADQL name, in any letter case."""
        return next((t for t in self.tables() if t.name.lower() == name.lower()), None)

    def columns_by_table(self) -> dict[str, tuple[str, ...]]:
        """{lower-case table name: its lower-case column names}: what ADQL may name."""
        return {t.name.lower(): tuple(unquoted(c.name).lower() for c in t.columns) for t in self.tables()}


def unquoted(name: str) -> str:
    """A column name as the database knows it: TAP_SCHEMA writes names that are ADQL
    reserved words delimited, as ADQL must spell them ("size")."""
    return name[1:-1].replace('""', '"') if name.startswith('"') and name.endswith('"') else name


def relation(table_name: str) -> str:
    """The PostgreSQL relation behind a published table, as the ADQL translator names it."""
    schema, _, name = table_name.lower().partition(".")
    return f"{SQL_SCHEMAS.get(schema, schema)}.{name}"


_cache: dict[tuple, Catalog] = {}
_lock = threading.Lock()


def load(connection) -> Catalog:
    """The catalog of the database `connection` (psycopg2) is on, read at its first use."""
    # OIDs are the database's own: one catalog per database, not per process.
    dsn = connection.get_dsn_parameters()
    key = (dsn.get("host"), dsn.get("port"), dsn.get("dbname"))
    with _lock:
        if key not in _cache:
            _cache[key] = _read(connection)
        return _cache[key]


def _read(connection) -> Catalog:
    with published(connection, [], base_url="", authority="", timeout=30) as cursor:
        cursor.execute("SELECT schema_name, utype, description FROM tap_schema.schemas ORDER BY schema_index")
        schemas = cursor.fetchall()
        cursor.execute("SELECT schema_name, table_name, table_type, utype, description FROM tap_schema.tables "
                       "ORDER BY table_index")
        tables = cursor.fetchall()
        cursor.execute("""SELECT table_name, column_name, datatype, arraysize, xtype, unit, ucd, utype, description,
                                 principal = 1, indexed = 1, std = 1
                          FROM tap_schema.columns ORDER BY column_index""")
        columns: dict[str, list[Column]] = {}
        for table_name, *described in cursor.fetchall():
            columns.setdefault(table_name, []).append(Column(*described))
        cursor.execute("SELECT key_id, from_column, target_column FROM tap_schema.key_columns")
        pairs: dict[str, list[tuple[str, str]]] = {}
        for key_id, source, target in cursor.fetchall():
            pairs.setdefault(key_id, []).append((source, target))
        cursor.execute("SELECT key_id, from_table, target_table, description, utype FROM tap_schema.keys "
                       "ORDER BY key_id")
        keys: dict[str, list[ForeignKey]] = {}
        for key_id, source, target, description, utype in cursor.fetchall():
            keys.setdefault(source, []).append(ForeignKey(key_id, target, tuple(pairs.get(key_id, ())),
                                                          description, utype))
        names = [name for _, name, *_ in tables]
        cursor.execute("""SELECT published.name, a.attrelid::oid, a.attnum, a.attname
                          FROM unnest(%s::text[], %s::text[]) AS published(name, relation)
                          JOIN pg_attribute a ON a.attrelid = to_regclass(published.relation)
                          WHERE a.attnum > 0 AND NOT a.attisdropped""",
                       (names, [relation(name) for name in names]))
        by_name = {(table, unquoted(c.name)): c for table, described in columns.items() for c in described}
        origins = {(oid, number): by_name[table, column] for table, oid, number, column in cursor.fetchall()
                   if (table, column) in by_name}
        cursor.execute("""SELECT t.oid, t.typname FROM pg_type t
                          JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = t.oid
                          JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
                          WHERE e.extname = 'pg_sphere'""")
        sphere_types = dict(cursor.fetchall())

    def table(schema, name, table_type, utype, description):
        return Table(name, table_type, utype, description, tuple(columns.get(name, ())), tuple(keys.get(name, ())))
    return Catalog(
        schemas=tuple(Schema(name, utype, description, tuple(table(*t) for t in tables if t[0] == name))
                      for name, utype, description in schemas),
        origins=origins, sphere_types=sphere_types)
