"""The published views (ivoa.obscore, archive.files) and their TAP_SCHEMA, on a real archive."""

from __future__ import annotations

import pytest

from api.ivoa.session import published
from apiserver import NIGHT, OLD, build_archive

BASE = "https://archive.example.org"


@pytest.fixture(scope="module")
def archive(cluster, tmp_path_factory):
    built = build_archive(cluster, tmp_path_factory.mktemp("obscore"))
    yield built
    built["close"]()


def _query(archive, principals, sql, params=()):
    connection = archive["engine"].raw_connection()
    try:
        with published(connection, principals, base_url=BASE, authority="obs.example.org", timeout=10) as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        connection.close()


def test_each_caller_sees_what_the_json_api_shows(archive):
    everyone = {r[0] for r in _query(archive, [], "SELECT obs_id FROM ivoa.obscore")}
    alice = {r[0] for r in _query(archive, ["alice", "P1"], "SELECT obs_id FROM ivoa.obscore")}
    assert f"data/{NIGHT}/cam/mine.fits" not in everyone
    assert f"data/{NIGHT}/cam/theirs.fits" not in everyone
    assert f"data/{OLD}/cam/public1.fits" in everyone
    assert alice == everyone | {f"data/{NIGHT}/cam/mine.fits"}
    files = {r[0] for r in _query(archive, ["alice", "P1"], "SELECT root || '/' || path FROM archive_tap.files")}
    assert files == alice


def test_obscore_row_says_what_the_archive_knows(archive):
    (row,) = _query(archive, [], """
        SELECT dataproduct_type, calib_level, obs_publisher_did, access_url, access_format, access_estsize,
               target_name, s_ra, s_dec, s_xel1, s_xel2, t_min, t_max, t_exptime, instrument_name, facility_name
        FROM ivoa.obscore WHERE obs_id = %s""", (f"data/{OLD}/cam/public1.fits",))
    file_id = archive["ids"][f"{OLD}/cam/public1.fits"]
    assert row[:6] == ("image", 1, f"ivo://obs.example.org/archive?data/{OLD}/cam/public1.fits",
                       f"{BASE}/api/v1/files/{file_id}/download", "application/fits", 6)
    assert row[6] == "NGC 3115"
    assert row[7] == pytest.approx(151.308, abs=0.01) and row[8] == pytest.approx(-7.7186, abs=0.01)
    assert row[9:11] == (10, 10)
    assert row[11] == pytest.approx(58606.208333, abs=1e-5)  # 2019-05-03T05:00:00 UTC
    assert (row[12] - row[11]) * 86400 == pytest.approx(30.0)
    assert row[13:] == (30.0, "Kast", "Shane")


def test_a_query_cannot_write_nor_read_the_tables_behind(archive):
    for statement in ("SELECT count(*) FROM files", "SELECT * FROM principals", "SELECT * FROM api_tokens",
                      "DELETE FROM tap_schema.tables", "SELECT pg_read_file('/etc/passwd')"):
        with pytest.raises(Exception) as refused:
            _query(archive, [], statement)
        assert "permission denied" in str(refused.value) or "read-only" in str(refused.value)


def test_cones_and_time_ranges_use_indexes(archive):
    plan = "\n".join(r[0] for r in _query(archive, [], """
        EXPLAIN SELECT obs_id FROM ivoa.obscore
        WHERE archive_point @ scircle(spoint(radians(151.3), radians(-7.7)), radians(0.1))"""))
    assert "files_pos" in plan, plan
    plan = "\n".join(r[0] for r in _query(archive, [], "EXPLAIN SELECT obs_id FROM ivoa.obscore "
                                                        "WHERE t_min > 60000 AND t_min < 60001"))
    assert "files_t_min" in plan, plan


def test_tap_schema_describes_every_published_column(archive):
    described = {}
    for table, column in _query(archive, [], "SELECT table_name, column_name FROM tap_schema.columns"):
        described.setdefault(table, []).append(column.strip('"'))  # "size": ADQL reserves the word
    assert len(described["ivoa.obscore"]) == 30
    for table, relation in (("ivoa.obscore", "ivoa.obscore"), ("archive.files", "archive_tap.files"),
                            ("TAP_SCHEMA.columns", "tap_schema.columns")):
        connection = archive["engine"].raw_connection()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {relation} LIMIT 0")
            actual = [d.name for d in cursor.description if d.name not in ("archive_point", "archive_circle")]
        connection.close()
        assert actual == described[table]


def test_a_failing_condition_never_runs_on_rows_the_caller_may_not_see(archive):
    # Were the views plain, the planner could test this before the visibility rule, and
    # the division by zero would tell that a hidden file of that name exists.
    for relation, column in (("ivoa.obscore", "target_name"), ("archive_tap.files", "object")):
        (count,), = _query(archive, [], f"SELECT count(*) FROM {relation} "
                                        f"WHERE 1 / (CASE WHEN {column} = 'SN 2026xyz' THEN 0 ELSE 1 END) = 1")
        assert count == len(_query(archive, [], f"SELECT 1 FROM {relation}"))


@pytest.mark.parametrize("call", ["pg_sleep(0)", "set_config('archive.principals', '{P2}', true)",
                                  "pg_advisory_lock(1)", "pg_try_advisory_xact_lock(1)", "pg_terminate_backend(1)"])
def test_the_adql_role_cannot_sleep_change_its_principals_lock_or_signal(archive, call):
    # Defence behind the translator, which refuses these by name already.
    with pytest.raises(Exception, match="permission denied for function"):
        _query(archive, [], f"SELECT {call}")
