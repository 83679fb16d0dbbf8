"""IVOA publication: ivoa.obscore and archive.files for ADQL, their TAP_SCHEMA, the ADQL role

Revision ID: 0007
Revises: 0006

The published tables are security-barrier views over `files` that show each caller only
what the JSON API shows them: the visibility predicate of archive_daemon/visibility.py,
with the caller's principals read from the transaction setting `archive.principals`
(set by the API, never by the query). TAP_SCHEMA is filled from the description below,
the one place the published columns are described; the API reads it back for /tables,
the ADQL allow-lists and its VOTable fields.
"""

import json

from alembic import op

from archive_daemon import adqlrole
from archive_daemon.visibility import VISIBLE

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ADQL_ROLE = "archive_adql"

# (column, SQL over files f / bands b / instruments i, datatype, arraysize, xtype, unit,
#  ucd, utype, description, principal, indexed, std). A name that ADQL reserves ("size") is
# given as TAP clients must write it, quoted.
OBSCORE = (
    ("dataproduct_type", "coalesce(i.dataproduct_type, 'image')", "char", "*", None, None,
     "meta.code.class", "obscore:ObsDataset.dataProductType", "Data product type: image or spectrum", 1, 0, 1),
    ("calib_level", "1", "short", None, None, None, "meta.code;obs.calib", "obscore:ObsDataset.calibLevel",
     "Calibration level: 1, raw instrumental data in a standard format", 1, 0, 1),
    ("obs_collection", "f.root", "char", "*", None, None, "meta.id", "obscore:DataID.Collection",
     "The archive's name of the tree the file lies in", 1, 0, 1),
    ("obs_id", "f.root || '/' || f.path", "char", "*", None, None, "meta.id", "obscore:DataID.observationID",
     "Tree and path of the file in the archive", 1, 0, 1),
    ("obs_publisher_did", "'ivo://' || current_setting('archive.authority', true) || '/archive?' || f.root || '/' || f.path",
     "char", "*", None, None, "meta.ref.ivoid", "obscore:Curation.PublisherDID",
     "Identifier of the file, the same for every caller and as long as the file is archived", 1, 0, 1),
    ("access_url", "current_setting('archive.base_url', true) || '/api/v1/files/' || f.id || '/download'",
     "char", "*", None, None, "meta.ref.url", "obscore:Access.Reference", "Where to download the file", 1, 0, 1),
    ("access_format", "CASE WHEN f.path LIKE '%.gz' THEN 'application/gzip' ELSE 'application/fits' END",
     "char", "*", None, None, "meta.code.mime", "obscore:Access.Format", "MIME type of the file", 1, 0, 1),
    ("access_estsize", "(f.size + 1023) / 1024", "long", None, None, "kbyte", "phys.size;meta.file",
     "obscore:Access.Size", "Size of the file", 1, 0, 1),
    ("target_name", "f.object", "char", "*", None, None, "meta.id;src", "obscore:Target.Name",
     "Object name from the header", 1, 0, 1),
    ("s_ra", "f.ra", "double", None, None, "deg", "pos.eq.ra", "obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1",
     "Right ascension of the pointing (ICRS)", 1, 1, 1),
    ("s_dec", "f.dec", "double", None, None, "deg", "pos.eq.dec", "obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2",
     "Declination of the pointing (ICRS)", 1, 1, 1),
    ("s_fov", "degrees(2 * sqrt(area(f.footprint) / pi()))", "double", None, None, "deg", "phys.angSize;instr.fov",
     "obscore:Char.SpatialAxis.Coverage.Bounds.Extent.diameter", "Diameter of a circle as large as the field", 1, 0, 1),
    ("s_region", "f.footprint", "char", "*", "adql:REGION", None, "pos.outline;obs.field",
     "obscore:Char.SpatialAxis.Coverage.Support.Area", "The field's corners, from the header's WCS", 0, 1, 1),
    ("s_resolution", "NULL::double precision", "double", None, None, "arcsec", "pos.angResolution",
     "obscore:Char.SpatialAxis.Resolution.Refval.value", "Spatial resolution (not known)", 0, 0, 1),
    ("s_xel1", "f.naxis[1]::bigint", "long", None, None, None, "meta.number", "obscore:Char.SpatialAxis.numBins1",
     "Pixels along the first axis", 0, 0, 1),
    ("s_xel2", "f.naxis[2]::bigint", "long", None, None, None, "meta.number", "obscore:Char.SpatialAxis.numBins2",
     "Pixels along the second axis", 0, 0, 1),
    ("t_xel", "NULL::bigint", "long", None, None, None, "meta.number", "obscore:Char.TimeAxis.numBins",
     "Time bins (not known)", 0, 0, 1),
    ("t_min", "f.t_min", "double", None, None, "d", "time.start;obs.exposure",
     "obscore:Char.TimeAxis.Coverage.Bounds.Limits.StartTime", "Start of the exposure (MJD, UTC)", 1, 1, 1),
    ("t_max", "f.t_max", "double", None, None, "d", "time.end;obs.exposure",
     "obscore:Char.TimeAxis.Coverage.Bounds.Limits.StopTime", "End of the exposure (MJD, UTC)", 1, 1, 1),
    ("t_exptime", "f.exptime", "double", None, None, "s", "time.duration;obs.exposure",
     "obscore:Char.TimeAxis.Coverage.Support.Extent", "Exposure time", 1, 0, 1),
    ("t_resolution", "NULL::double precision", "double", None, None, "s", "time.resolution",
     "obscore:Char.TimeAxis.Resolution.Refval.value", "Time resolution (not known)", 0, 0, 1),
    ("em_xel", "NULL::bigint", "long", None, None, None, "meta.number", "obscore:Char.SpectralAxis.numBins",
     "Spectral bins (not known)", 0, 0, 1),
    ("em_min", "b.em_min", "double", None, None, "m", "em.wl;stat.min",
     "obscore:Char.SpectralAxis.Coverage.Bounds.Limits.LoLimit", "Shortest wavelength, from the filter", 1, 0, 1),
    ("em_max", "b.em_max", "double", None, None, "m", "em.wl;stat.max",
     "obscore:Char.SpectralAxis.Coverage.Bounds.Limits.HiLimit", "Longest wavelength, from the filter", 1, 0, 1),
    ("em_res_power", "NULL::double precision", "double", None, None, None, "spect.resolution",
     "obscore:Char.SpectralAxis.Resolution.ResolPower.refVal", "Resolving power (not known)", 0, 0, 1),
    ("o_ucd", "'phot.count'::text", "char", "*", None, None, "meta.ucd", "obscore:Char.ObservableAxis.ucd",
     "What the pixels measure", 0, 0, 1),
    ("pol_states", "NULL::text", "char", "*", None, None, "meta.code;phys.polarization",
     "obscore:Char.PolarizationAxis.stateList", "Polarization states (none)", 0, 0, 1),
    ("pol_xel", "NULL::bigint", "long", None, None, None, "meta.number", "obscore:Char.PolarizationAxis.numBins",
     "Polarization bins (none)", 0, 0, 1),
    ("facility_name", "f.telescope", "char", "*", None, None, "meta.id;instr.tel",
     "obscore:Provenance.ObsConfig.Facility.name", "Telescope", 1, 0, 1),
    ("instrument_name", "f.instrument", "char", "*", None, None, "meta.id;instr",
     "obscore:Provenance.ObsConfig.Instrument.name", "Instrument", 1, 0, 1),
)

FILES = (
    ("obs_publisher_did", OBSCORE[4][1], "char", "*", None, None, "meta.ref.ivoid", None,
     "The file's row in ivoa.obscore", 1, 0, 0),
    ("id", "f.id", "long", None, None, None, "meta.id", None, "The file's number in the archive's JSON API", 1, 1, 0),
    ("root", "f.root", "char", "*", None, None, "meta.id", None, "The tree the file lies in", 1, 0, 0),
    ("path", "f.path", "char", "*", None, None, "meta.id;meta.file", None, "Path of the file below its tree", 1, 0, 0),
    ('"size"', "f.size", "long", None, None, "byte", "phys.size;meta.file", None, "Size of the file", 0, 0, 0),
    ("mtime", "f.mtime", "char", "*", "timestamp", None, "time.processing", None,
     "When the file was last changed, as loaded (UTC)", 0, 0, 0),
    ("night", "f.night::text", "char", "*", None, None, "time.obs;meta.dataset", None,
     "The observing night: the site's local date on which it began", 1, 1, 0),
    ("instrument", "f.instrument", "char", "*", None, None, "meta.id;instr", None, "Instrument", 1, 0, 0),
    ("telescope", "f.telescope", "char", "*", None, None, "meta.id;instr.tel", None, "Telescope", 1, 0, 0),
    ("object", "f.object", "char", "*", None, None, "meta.id;src", None, "Object name from the header", 1, 0, 0),
    ("obs_start", "f.obs_start", "char", "*", "timestamp", None, "time.start;obs.exposure", None,
     "Start of the exposure (UTC)", 1, 1, 0),
    ("obs_end", "f.obs_end", "char", "*", "timestamp", None, "time.end;obs.exposure", None,
     "End of the exposure (UTC)", 0, 0, 0),
    ("exptime", "f.exptime", "double", None, None, "s", "time.duration;obs.exposure", None, "Exposure time", 1, 0, 0),
    ("frame_type", "f.frame_type", "char", "*", None, None, "meta.code.class", None,
     "object, bias, dark, flat, arc, focus, standard, sky, or the header's own word", 1, 0, 0),
    ("filter", "f.filter", "char", "*", None, None, "instr.filter", None, "Filter", 1, 0, 0),
    ("program", "f.program", "char", "*", None, None, "meta.id;obs.proposal", None, "Observing program", 1, 0, 0),
    ("ra", "f.ra", "double", None, None, "deg", "pos.eq.ra;meta.main", None, "Right ascension (ICRS)", 1, 1, 0),
    ("dec", "f.dec", "double", None, None, "deg", "pos.eq.dec;meta.main", None, "Declination (ICRS)", 1, 1, 0),
    ("footprint", "f.footprint", "char", "*", "adql:REGION", None, "pos.outline;obs.field", None,
     "The field's corners, from the header's WCS", 0, 1, 0),
    ("public_date", "f.public_date", "char", "*", "timestamp", None, "time.release", None,
     "When the file becomes public to everyone (empty: not before staff say so)", 1, 0, 0),
    ("access_url", OBSCORE[5][1], "char", "*", None, None, "meta.ref.url", None, "Where to download the file", 0, 0, 0),
)

TAP_SCHEMA = {
    "schemas": (("schema_name", "char", "*", "Schema name"), ("utype", "char", "*", "Utype of the schema"),
                ("description", "char", "*", "What the schema holds"),
                ("schema_index", "int", None, "Order in which to show the schemas")),
    "tables": (("schema_name", "char", "*", "The schema the table is in"), ("table_name", "char", "*", "Table name, qualified"),
               ("table_type", "char", "*", "table or view"), ("utype", "char", "*", "Utype of the table"),
               ("description", "char", "*", "What the table holds"),
               ("table_index", "int", None, "Order in which to show the tables")),
    "columns": (("table_name", "char", "*", "The table the column is in"), ("column_name", "char", "*", "Column name"),
                ("utype", "char", "*", "Utype of the column"), ("ucd", "char", "*", "UCD of the column"),
                ("unit", "char", "*", "Unit (VOUnit)"), ("description", "char", "*", "What the column holds"),
                ("datatype", "char", "*", "VOTable datatype"), ("arraysize", "char", "*", "VOTable arraysize"),
                ("xtype", "char", "*", "VOTable xtype"), ('"size"', "int", None, "Length of fixed-size arrays (deprecated)"),
                ("principal", "int", None, "1: shown by default"), ("indexed", "int", None, "1: an index helps searches on it"),
                ("std", "int", None, "1: defined by a standard"), ("column_index", "int", None, "Order in which to show the columns")),
    "keys": (("key_id", "char", "*", "Key name"), ("from_table", "char", "*", "Table holding the foreign key"),
             ("target_table", "char", "*", "Table the key points to"), ("utype", "char", "*", "Utype of the key"),
             ("description", "char", "*", "What the key links")),
    "key_columns": (("key_id", "char", "*", "Key name"), ("from_column", "char", "*", "Column in the from_table"),
                    ("target_column", "char", "*", "Column in the target_table")),
}

SCHEMAS = (
    ("ivoa", "The IVOA data models: ObsCore", 0),
    ("archive", "The archive's own description of its files", 1),
    ("TAP_SCHEMA", "What this service publishes", 2),
)
TABLES = (
    ("ivoa", "ivoa.obscore", "ivo://ivoa.net/std/obscore#table-1.1",
     "Every archived file the caller may read, described by the ObsCore 1.1 data model", 0),
    ("archive", "archive.files", None, "Every archived file the caller may read, with the archive's own columns", 1),
) + tuple(("TAP_SCHEMA", f"TAP_SCHEMA.{name}", None, f"TAP_SCHEMA {name}", 10 + i)
          for i, name in enumerate(TAP_SCHEMA))
KEYS = (
    ("files_obscore", "archive.files", "ivoa.obscore", "The file's ObsCore row", (("obs_publisher_did", "obs_publisher_did"),)),
    ("tables_schema", "TAP_SCHEMA.tables", "TAP_SCHEMA.schemas", "The table's schema", (("schema_name", "schema_name"),)),
    ("columns_table", "TAP_SCHEMA.columns", "TAP_SCHEMA.tables", "The column's table", (("table_name", "table_name"),)),
    ("keys_from", "TAP_SCHEMA.keys", "TAP_SCHEMA.tables", "The key's table", (("from_table", "table_name"),)),
    ("keys_target", "TAP_SCHEMA.keys", "TAP_SCHEMA.tables", "The key's target", (("target_table", "table_name"),)),
    ("key_columns_key", "TAP_SCHEMA.key_columns", "TAP_SCHEMA.keys", "The column pair's key", (("key_id", "key_id"),)),
)

def _view(name: str, columns, joins: str) -> str:
    selected = ",\n    ".join(f"{sql} AS {column}" for column, sql, *_ in columns)
    visible = VISIBLE % {"principals": "archive_principals()"}
    return (f"CREATE VIEW {name} WITH (security_barrier) AS SELECT\n    {selected},\n    f.pos AS archive_point\n"
            f"FROM files f{joins}\nWHERE {visible}")


def _literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _insert(table: str, rows) -> None:
    if rows:
        values = ",\n".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows)
        op.execute(f"INSERT INTO tap_schema.{table} VALUES\n{values}")


def _fill_tap_schema() -> None:
    _insert("schemas", [(name, None, text, index) for name, text, index in SCHEMAS])
    _insert("tables", [(schema, table, "view" if schema != "TAP_SCHEMA" else "table", utype, text, index)
                       for schema, table, utype, text, index in TABLES])
    columns = []
    for table, described in (("ivoa.obscore", OBSCORE), ("archive.files", FILES)):
        for index, (name, _, datatype, arraysize, xtype, unit, ucd, utype, text, principal, indexed, std) \
                in enumerate(described):
            columns.append((table, name, utype, ucd, unit, text, datatype, arraysize, xtype, None,
                            principal, indexed, std, index))
    for table, described in TAP_SCHEMA.items():
        for index, (name, datatype, arraysize, text) in enumerate(described):
            columns.append((f"TAP_SCHEMA.{table}", name, None, None, None, text, datatype, arraysize, None, None,
                            1, 0, 1, index))
    _insert("columns", columns)
    _insert("keys", [(key, source, target, None, text) for key, source, target, text, _ in KEYS])
    _insert("key_columns", [(key, a, b) for key, *_, pairs in KEYS for a, b in pairs])


def upgrade() -> None:
    # MJD from a UTC instant: the epoch of a timestamptz does not depend on the session's
    # time zone, so the function is immutable, and indexable as t_min and t_max.
    op.execute("""
        CREATE FUNCTION archive_mjd(t timestamptz) RETURNS double precision
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        RETURN extract(epoch FROM t)::double precision / 86400.0 + 40587.0
    """)
    # Stored columns, so that a time range on the views is a plain comparison (leakproof, so indexable)
    # against an index; NAXISn of the data, for s_xel1 and s_xel2 (the daemon fills it).
    op.execute("""
        ALTER TABLE files
            ADD COLUMN t_min double precision GENERATED ALWAYS AS (archive_mjd(obs_start)) STORED,
            ADD COLUMN t_max double precision GENERATED ALWAYS AS (archive_mjd(obs_end)) STORED,
            ADD COLUMN naxis integer[]
    """)
    op.execute("CREATE INDEX files_t_min ON files (t_min)")
    op.execute("CREATE INDEX files_t_max ON files (t_max)")
    # What ObsCore needs that the header does not say, kept by the leading daemon from its
    # configuration (ivoa.bands, ivoa.spectrum_instruments): lower-case names.
    op.execute("CREATE TABLE ivoa_bands (filter text PRIMARY KEY, em_min double precision NOT NULL, "
               "em_max double precision NOT NULL)")
    op.execute("CREATE TABLE ivoa_instruments (instrument text PRIMARY KEY, dataproduct_type text NOT NULL)")
    # The caller's principals, set by the API for the transaction. Unreadable: an error,
    # so a query fails rather than seeing more.
    op.execute("""
        CREATE FUNCTION archive_principals() RETURNS text[]
        LANGUAGE sql STABLE PARALLEL SAFE
        RETURN coalesce(nullif(current_setting('archive.principals', true), ''), '{}')::text[]
    """)
    op.execute("CREATE SCHEMA ivoa")
    # ADQL's `archive` schema is `archive_tap` in PostgreSQL: a schema named like the role
    # (`archive` by default) would come first in its search path and hide the tables.
    op.execute("CREATE SCHEMA archive_tap")
    op.execute("CREATE SCHEMA tap_schema")
    joins = ("\nLEFT JOIN ivoa_bands b ON b.filter = lower(f.filter)"
             "\nLEFT JOIN ivoa_instruments i ON i.instrument = lower(f.instrument)")
    op.execute(_view("ivoa.obscore", OBSCORE, joins))
    op.execute(_view("archive_tap.files", FILES, ""))
    for table, columns in TAP_SCHEMA.items():
        declared = ['"%s" %s' % (name.strip('"'), "integer" if datatype == "int" else "text")
                    for name, datatype, _, _ in columns]
        op.execute(f"CREATE TABLE tap_schema.{table} ({', '.join(declared)})")
    _fill_tap_schema()

    op.execute(f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ADQL_ROLE}') THEN
                CREATE ROLE {ADQL_ROLE} NOLOGIN;
            END IF;
            IF NOT pg_has_role(current_user, '{ADQL_ROLE}', 'MEMBER') THEN
                EXECUTE format('GRANT {ADQL_ROLE} TO %I', current_user);
            END IF;
        END $$
    """)
    for schema in ("ivoa", "archive_tap", "tap_schema"):
        op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {ADQL_ROLE}")
        op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {ADQL_ROLE}")
    op.execute(adqlrole.SQL)  # when the migration runs as a superuser (see the module)
    # Files archived before this revision: NAXISn from the stored header (the data's: the
    # extension's when the primary holds none), card by card.
    op.execute(r"""
        UPDATE files SET naxis = ARRAY[
            substring(header FROM '^(?:.{80})*?NAXIS1  = +([0-9]+) ')::integer,
            substring(header FROM '^(?:.{80})*?NAXIS2  = +([0-9]+) ')::integer]
        WHERE header ~ 'NAXIS1  = '
    """)


def downgrade() -> None:
    op.execute("DROP SCHEMA tap_schema CASCADE")
    op.execute("DROP SCHEMA archive_tap CASCADE")
    op.execute("DROP SCHEMA ivoa CASCADE")
    op.execute("DROP FUNCTION archive_principals()")
    op.execute("DROP TABLE ivoa_instruments")
    op.execute("DROP TABLE ivoa_bands")
    op.execute("ALTER TABLE files DROP COLUMN naxis, DROP COLUMN t_max, DROP COLUMN t_min")
    op.execute("DROP FUNCTION archive_mjd(timestamptz)")
