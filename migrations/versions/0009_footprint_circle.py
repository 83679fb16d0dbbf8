"""footprint_circle: footprints searched through a GiST index on their bounding circles

Revision ID: 0009
Revises: 0008

Every row written into `files` inserts into each of its indexes, and pg_sphere's GiST on
polygons costs far more per row than all the others together (about twenty times a GiST
on circles). Searches on footprints now ask a circle holding the footprint first, through
its index, and the polygon itself only for the rows the circle lets through: the same
answers, for a fraction of the cost of every write. The daemon computes the circle
(archive_daemon/skypos.py, bounding_circle); this fills it for the files archived before.
The views the IVOA services publish gain it as a hidden column, `archive_circle`, as they
have `archive_point` for cones.
"""

import importlib.util
import math
import re
from pathlib import Path

from alembic import op
from psycopg2.extras import execute_values

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_BATCH = 10000
# A vertex of pg_sphere's polygon output in radians: "(0.0174532925199433 , 0.0349065850398866)"
# (pg_sphere 1.1 and 1.5 both; the spacing differs in degrees).
_VERTEX = re.compile(r"\(\s*([^,()\s]+)\s*,\s*([^,()\s]+)\s*\)")


def _ivoa():
    """Revision 0007, whose description of the published views this one extends."""
    spec = importlib.util.spec_from_file_location("archive_migration_0007", Path(__file__).with_name("0007_ivoa.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _views(hidden: str) -> list[tuple[str, str]]:
    """(name, CREATE VIEW statement) of both published views, with `hidden` after archive_point."""
    ivoa = _ivoa()
    joins = ("\nLEFT JOIN ivoa_bands b ON b.filter = lower(f.filter)"
             "\nLEFT JOIN ivoa_instruments i ON i.instrument = lower(f.instrument)")
    views = []
    for name, columns, joined in (("ivoa.obscore", ivoa.OBSCORE, joins), ("archive_tap.files", ivoa.FILES, "")):
        sql = ivoa._view(name, columns, joined)
        assert "    f.pos AS archive_point\nFROM" in sql
        views.append((name, sql.replace("    f.pos AS archive_point\n", "    f.pos AS archive_point" + hidden + "\n")))
    return views


def _polygon_vertices(text: str) -> list[tuple[float, float]]:
    """Degrees of the vertices of a polygon pg_sphere wrote in radians."""
    return [(math.degrees(float(ra)), math.degrees(float(dec))) for ra, dec in _VERTEX.findall(text)]


def _fill_circles() -> None:
    """The bounding circle of every footprint that has none, from the polygon's own vertices."""
    # Here, not at the top: alembic imports every revision to find the head, at every start
    # of the daemon and the API, and skypos brings astropy (a third of a second).
    from archive_daemon.skypos import scircle_literal
    cursor = op.get_bind().connection.cursor()
    # The polygon's text depends on this session-wide setting: radians, as stored (pg_sphere's
    # default, which the API reads too; set in case the session chose another).
    cursor.execute("SELECT set_sphere_output('RAD')")
    last = 0
    while True:
        cursor.execute("SELECT id, footprint::text FROM files WHERE id > %s AND footprint IS NOT NULL "
                       "AND footprint_circle IS NULL ORDER BY id LIMIT %s", (last, _BATCH))
        rows = cursor.fetchall()
        if not rows:
            break
        circles = []
        for file_id, text in rows:
            try:
                circles.append((file_id, scircle_literal(_polygon_vertices(text))))
            except ValueError as exc:
                raise RuntimeError(f"files.id {file_id}: footprint {text[:200]}: {exc}") from None
        execute_values(cursor, "UPDATE files f SET footprint_circle = c.circle::scircle "
                               "FROM (VALUES %s) AS c (id, circle) WHERE f.id = c.id", circles, page_size=1000)
        last = rows[-1][0]


def upgrade() -> None:
    op.execute("ALTER TABLE files ADD COLUMN IF NOT EXISTS footprint_circle scircle")
    _fill_circles()  # before the index exists: cheaper than inserting into it row by row
    op.execute("DROP INDEX IF EXISTS files_footprint")
    op.execute("CREATE INDEX IF NOT EXISTS files_footprint_circle ON files USING gist (footprint_circle)")
    # A view may gain columns at its end in place: its grants and dependants stay.
    for _, sql in _views(",\n    f.footprint_circle AS archive_circle"):
        op.execute(sql.replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1))


def downgrade() -> None:
    ivoa = _ivoa()
    for name, sql in _views(""):
        op.execute(f"DROP VIEW {name}")
        op.execute(sql)
        op.execute(f"GRANT SELECT ON {name} TO {ivoa.ADQL_ROLE}")
    op.execute("CREATE INDEX IF NOT EXISTS files_footprint ON files USING gist (footprint)")
    op.execute("DROP INDEX IF EXISTS files_footprint_circle")
    op.execute("ALTER TABLE files DROP COLUMN IF EXISTS footprint_circle")
