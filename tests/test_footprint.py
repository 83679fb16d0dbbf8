"""Footprints are searched through a circle that holds each one (migration 0009): the circle
the daemon computes, and the one the migration gives files archived before it."""

from __future__ import annotations

import random

import psycopg2
import pytest
import sqlalchemy as sa
from alembic import command

from archive_daemon import db
from archive_daemon.skypos import CIRCLE_MARGIN_DEG, bounding_circle, scircle_literal, spoly_literal
from conftest import database_at, fresh_database

# Footprints as the daemon stores them: a field of 0.1 degree, one across RA 0, one around
# the pole, a long thin slit whose corners are far from its centre, a tilted quadrilateral.
FOOTPRINTS = {
    "field": [(149.95, 1.95), (150.05, 1.95), (150.05, 2.05), (149.95, 2.05)],
    "across_zero": [(359.95, -0.05), (0.05, -0.05), (0.05, 0.05), (359.95, 0.05)],
    "pole": [(0.0, 89.9), (90.0, 89.9), (180.0, 89.9), (270.0, 89.9)],
    "slit": [(10.0, -30.0), (10.001, -30.0), (12.0, -28.0), (11.999, -28.0)],
    "tilted": [(200.0, -60.0), (201.5, -59.2), (200.7, -58.1), (199.4, -59.0)],
}


@pytest.fixture(scope="module")
def sphere(cluster):
    url, drop = fresh_database(cluster)
    connection = psycopg2.connect(url)
    yield connection
    connection.close()
    drop()


def _holds(connection, points) -> tuple[bool, float]:
    """Whether pg_sphere finds the polygon of `points` inside their bounding circle, and the
    circle's radius less the distance of the farthest vertex (degrees)."""
    ra, dec, radius = bounding_circle(points)
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::spoly <@ %s::scircle", (spoly_literal(points), scircle_literal(points)))
        (inside,), = cursor.fetchall()
        cursor.execute("SELECT max(degrees(spoint(radians(%s), radians(%s)) <-> spoint(radians(r), radians(d)))) "
                       "FROM unnest(%s::float8[], %s::float8[]) AS v (r, d)",
                       (ra, dec, [p[0] for p in points], [p[1] for p in points]))
        (farthest,), = cursor.fetchall()
    return inside, radius - farthest


def test_the_circle_holds_the_footprint_by_a_hair(sphere):
    generator = random.Random(9)
    shapes = list(FOOTPRINTS.values())
    for _ in range(200):  # small tilted quadrilaterals anywhere on the sky
        ra, dec, size = generator.uniform(0, 360), generator.uniform(-89, 89), generator.uniform(1e-4, 2)
        shapes.append([(ra + size * dx, max(-90.0, min(90.0, dec + size * dy)))
                       for dx, dy in ((-0.5, -0.4), (0.6, -0.5), (0.5, 0.6), (-0.4, 0.5))])
    for points in shapes:
        inside, slack = _holds(sphere, points)
        assert inside, points
        assert 0 < slack < 2 * CIRCLE_MARGIN_DEG, points


def test_no_circle_of_90_degrees_holds_points_around_the_whole_sky():
    with pytest.raises(ValueError):
        bounding_circle([(0, 0), (90, 0), (180, 0), (270, 0)])


def _indexes(connection) -> set[str]:
    return {name for name, in connection.execute(sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'files'"))}


def test_db_upgrade_gives_footprints_stored_before_their_circles(cluster):
    url, drop = database_at(cluster, "0008")
    engine = db.create_engine(url)
    try:
        with engine.begin() as connection:  # as the code of revision 0008 stored them
            for name, points in FOOTPRINTS.items():
                connection.execute(sa.text("INSERT INTO files (root, path, size, mtime, header, footprint, public_date) "
                                           "VALUES ('data', :path, 2880, now(), '', CAST(:footprint AS spoly), now())"),
                                   {"path": f"{name}.fits", "footprint": spoly_literal(points)})
            connection.execute(sa.text("INSERT INTO files (root, path, size, mtime, header) "
                                       "VALUES ('data', 'bias.fits', 2880, now(), '')"))
            assert "files_footprint" in _indexes(connection)
        db.upgrade(engine)
        with engine.connect() as connection:
            circles = dict(connection.execute(sa.text(
                "SELECT path, footprint <@ footprint_circle FROM files")).all())
            assert circles == {**{f"{name}.fits": True for name in FOOTPRINTS}, "bias.fits": None}
            # the same circle the daemon computes for the same corners (the stored ones, to rounding)
            for name, points in FOOTPRINTS.items():
                radius, = connection.execute(sa.text("SELECT degrees(radius(footprint_circle)) FROM files "
                                                     "WHERE path = :path"), {"path": f"{name}.fits"}).one()
                assert radius == pytest.approx(bounding_circle(points)[2], abs=1e-9)
            assert "files_footprint" not in _indexes(connection) and "files_footprint_circle" in _indexes(connection)
            for view in ("ivoa.obscore", "archive_tap.files"):
                columns = connection.execute(sa.text(f"SELECT * FROM {view} LIMIT 0")).keys()
                assert list(columns)[-2:] == ["archive_point", "archive_circle"]
            # pg_sphere writes radians, its default, which the API reads, after the migration as before
            assert connection.execute(sa.text("SELECT '{(1d,2d),(1.1d,2d),(1d,2.1d)}'::spoly::text")).scalar() \
                .startswith("{(0.01745329251994")
        assert db.upgrade(engine) == db.upgrade(engine)  # a second run changes nothing
        db.check_schema(engine)
        # and back, and forward again
        with engine.begin() as connection:
            command.downgrade(db._alembic(connection), "0008")
        with engine.connect() as connection:
            assert "files_footprint" in _indexes(connection)
            assert "archive_circle" not in connection.execute(sa.text("SELECT * FROM ivoa.obscore LIMIT 0")).keys()
        db.upgrade(engine)
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(footprint_circle) FROM files")).scalar() == len(FOOTPRINTS)
    finally:
        engine.dispose()
        drop()
