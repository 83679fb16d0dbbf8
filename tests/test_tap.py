"""TAP at /ivoa/tap on the real API (gunicorn, HTTP), as pyvo and plain HTTP clients use it."""

from __future__ import annotations

import csv
import io
import time
import warnings
import xml.etree.ElementTree as ET

import pytest
import pyvo
import requests
import yaml
from astropy.io.votable import parse_single_table

from api.ivoa import query, tap
from api.ivoa.session import published
from apiserver import FRONT_END, NIGHT, OLD, ApiServer, build_archive
from fitsmaker import WCS_CARDS, image

SKY = 8  # extra public files, 0.6 arcmin apart in a row along RA from (150, 2)
BODY_CAP = 64_000  # api.max_body_bytes of this module's API
VOTABLE_NS = {"v": "http://www.ivoa.net/xml/VOTable/v1.3"}


def _sky(root):
    for i in range(SKY):
        ra = 150.0 + i * 0.01
        image(root / OLD / "sky" / f"f{i}.fits",
              {**WCS_CARDS, "CRVAL1": ra, "RA": ra, "DEC": 2.0, "OBJECT": f"field {i}",
               "DATE-OBS": f"2019-05-03T0{i}:30:00"})


@pytest.fixture(scope="module")
def archive(cluster, tmp_path_factory):
    base = tmp_path_factory.mktemp("tap")
    built = build_archive(cluster, base, api={"max_body_bytes": BODY_CAP}, extra=_sky)
    settings = {**built["settings"], "ivoa": {"authority": "obs.example.org", "default_maxrec": 3,
                                              "max_maxrec": 10, "sync_timeout": 2}}
    built["config_path"].write_text(yaml.safe_dump(settings))
    server = ApiServer(built["config_path"], built["url"], base / "gunicorn.log")
    yield {**built, "server": server, "tap": server.base + "/ivoa/tap"}
    server.stop()
    built["close"]()


def _service(archive, user: str | None = None) -> pyvo.dal.TAPService:
    session = requests.Session()
    if user:
        session.headers["Authorization"] = f"Bearer {archive['tokens'][user]}"
    return pyvo.dal.TAPService(archive["tap"], session=session)


def _sync(archive, method="GET", **params) -> requests.Response:
    url = archive["tap"] + "/sync"
    if method == "POST":
        return requests.post(url, data=params, timeout=30)
    return requests.get(url, params=params, timeout=30)


def _status(response: requests.Response) -> list[tuple[str, str]]:
    """QUERY_STATUS INFOs of a VOTable answer, in order, with whether they follow the TABLE."""
    resource = ET.fromstring(response.content).find("v:RESOURCE", VOTABLE_NS)
    found, after_table = [], False
    for element in resource:
        after_table = after_table or element.tag.endswith("TABLE")
        if element.tag.endswith("INFO") and element.get("name") == "QUERY_STATUS":
            found.append((element.get("value"), "after" if after_table else "before"))
    return found


def _error(response: requests.Response) -> str:
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/x-votable+xml")
    info = ET.fromstring(response.content).find("v:RESOURCE/v:INFO[@name='QUERY_STATUS']", VOTABLE_NS)
    assert info.get("value") == "ERROR"
    return info.text


OURS = "SELECT obs_id FROM ivoa.obscore WHERE obs_id NOT LIKE '%/sky/%'"
PUBLIC = {f"data/{OLD}/cam/{name}.fits" for name in ("public1", "public2", "big", "escape")}


@pytest.mark.parametrize("user, sees", [(None, PUBLIC), ("bob", PUBLIC),
                                        ("alice", PUBLIC | {f"data/{NIGHT}/cam/mine.fits"})])
def test_each_caller_sees_the_rows_they_may_read(archive, user, sees):
    rows = _service(archive, user).run_sync(OURS, maxrec=10)
    assert {r["obs_id"] for r in rows} == sees


def test_rows_come_with_their_published_metadata_and_values_in_dali_form(archive):
    rows = _service(archive).run_sync(
        "SELECT o.obs_id, o.s_ra AS ra, o.s_region, f.obs_start, f.\"size\", o.calib_level "
        "FROM ivoa.obscore AS o JOIN archive.files AS f ON f.obs_publisher_did = o.obs_publisher_did "
        f"WHERE o.obs_id = 'data/{OLD}/sky/f0.fits'")
    ra = rows.fieldname_with_ucd("pos.eq.ra")
    assert ra == "ra" and rows.getdesc("ra").unit == "deg"  # a renamed column keeps its description
    assert rows.getdesc("s_region").xtype == "adql:REGION"
    assert rows.getdesc("obs_start").xtype == "timestamp" and rows.getdesc("calib_level").datatype == "short"
    (row,) = rows
    assert row["ra"] == pytest.approx(150.0)
    shape, frame, *numbers = row["s_region"].split()  # STC-S: ten pixels of 0.01 degrees around (150, 2)
    assert (shape, frame) == ("Polygon", "ICRS")
    corners = [float(n) for n in numbers]
    assert sorted(corners[0::2]) == pytest.approx([149.95, 149.95, 150.05, 150.05], abs=1e-4)
    assert sorted(corners[1::2]) == pytest.approx([1.95, 1.95, 2.05, 2.05], abs=1e-4)
    assert row["obs_start"] == "2019-05-03T00:30:00"
    assert row["size"] > 0 and row["calib_level"] == 1


def test_columns_that_are_not_published_get_types_from_the_database(archive):
    rows = _service(archive).run_sync("SELECT COUNT(*) AS n, MAX(t_min) AS latest, 'x' AS letter "
                                      "FROM ivoa.obscore")
    assert (rows.getdesc("n").datatype, rows.getdesc("latest").datatype,
            rows.getdesc("letter").datatype) == ("long", "double", "char")
    assert rows[0]["n"] == len(PUBLIC) + SKY


def test_the_same_name_twice_is_still_a_valid_votable(archive):
    response = _sync(archive, QUERY="SELECT o.s_ra, p.s_ra FROM ivoa.obscore AS o JOIN ivoa.obscore AS p "
                                    "ON o.obs_id = p.obs_id WHERE o.obs_id LIKE '%/sky/f0.fits'", LANG="ADQL")
    table = parse_single_table(io.BytesIO(response.content), verify="exception")
    assert [f.name for f in table.fields] == ["s_ra", "s_ra"]
    assert len({f.ID for f in table.fields}) == 2


def test_overflow_is_flagged_after_the_table_and_maxrec_has_a_default_and_a_cap(archive):
    service = _service(archive)
    with pytest.warns(pyvo.dal.DALOverflowWarning):
        rows = service.run_sync("SELECT obs_id FROM ivoa.obscore")
    assert len(rows) == 3 and rows.query_status == "OVERFLOW"
    with pytest.warns(pyvo.dal.DALOverflowWarning):
        assert len(service.run_sync("SELECT obs_id FROM ivoa.obscore", maxrec=1000)) == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = service.run_sync("SELECT TOP 2 obs_id FROM ivoa.obscore", maxrec=2)  # exactly MAXREC: no overflow
    assert len(rows) == 2 and rows.query_status == "OK"
    response = _sync(archive, QUERY="SELECT obs_id FROM ivoa.obscore", MAXREC="5")
    assert _status(response) == [("OK", "before"), ("OVERFLOW", "after")]
    response = _sync(archive, QUERY="SELECT obs_id FROM ivoa.obscore WHERE obs_id LIKE '%/sky/f1.fits'")
    assert _status(response) == [("OK", "before")]


def test_maxrec_zero_answers_the_columns_without_rows(archive):
    response = _sync(archive, QUERY="SELECT obs_id, s_ra FROM ivoa.obscore", MAXREC="0")
    table = parse_single_table(io.BytesIO(response.content))
    assert [f.name for f in table.fields] == ["obs_id", "s_ra"] and len(table.array) == 0


def test_a_posted_body_over_the_configured_cap_is_refused_unread_sync_and_async(archive):
    padding = "x" * BODY_CAP
    for url in (archive["tap"] + "/sync", archive["tap"] + "/async"):
        response = requests.post(url, data={"QUERY": "SELECT TOP 1 obs_id FROM ivoa.obscore", "LANG": "ADQL",
                                            "PAD": padding}, timeout=30, allow_redirects=False)
        assert response.status_code == 400 and response.headers["Content-Type"].startswith("application/x-votable")
        assert _status(response) == [("ERROR", "before")]
        assert f"larger than {BODY_CAP} bytes (api.max_body_bytes)" in response.text


def test_post_lower_case_names_runid_and_csv(archive):
    response = _sync(archive, "POST", query="SELECT obs_id, s_ra, t_min FROM ivoa.obscore "
                                             "WHERE obs_id LIKE '%/sky/f2.fits'",
                     lang="adql", request="DOQUERY", responseformat="csv")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    header, row = csv.reader(io.StringIO(response.text))
    assert header == ["obs_id", "s_ra", "t_min"] and row[:2] == [f"data/{OLD}/sky/f2.fits", "150.02"]
    assert float(row[2]) == pytest.approx(58606 + 2.5 / 24)
    response = _sync(archive, "POST", QUERY="SELECT TOP 1 obs_id FROM ivoa.obscore", RUNID="my-run 7",
                     FORMAT="application/x-votable+xml")
    runid = ET.fromstring(response.content).find("v:RESOURCE/v:INFO[@name='RUNID']", VOTABLE_NS)
    assert runid.get("value") == "my-run 7"
    multipart = requests.post(archive["tap"] + "/sync", files={"query": (None, "SELECT obs_id FROM ivoa.obscore"),
                                                               "lang": (None, "ADQL"), "maxrec": (None, "1")})
    assert len(parse_single_table(io.BytesIO(multipart.content)).array) == 1


def test_tap_schema_can_be_queried(archive):
    service = _service(archive)
    tables = {r["table_name"] for r in service.run_sync("SELECT * FROM TAP_SCHEMA.tables", maxrec=10)}
    assert {"ivoa.obscore", "archive.files", "TAP_SCHEMA.columns"} <= tables
    rows = service.run_sync("SELECT column_name, \"size\", datatype FROM TAP_SCHEMA.columns "
                            "WHERE table_name = 'ivoa.obscore' AND column_name = 's_ra'")
    assert [(r["column_name"], r["datatype"]) for r in rows] == [("s_ra", "double")]


@pytest.mark.parametrize("params, message", [
    ({"QUERY": "SELEC obs_id FROM ivoa.obscore"}, ""),
    ({"LANG": "ADQL"}, "QUERY"),
    ({"QUERY": "SELECT 1 FROM ivoa.obscore", "LANG": "SQL"}, "LANG"),
    ({"QUERY": "SELECT 1 FROM ivoa.obscore", "MAXREC": "lots"}, "MAXREC"),
    ({"QUERY": "SELECT 1 FROM ivoa.obscore", "MAXREC": "-1"}, "MAXREC"),
    ({"QUERY": "SELECT 1 FROM ivoa.obscore", "RESPONSEFORMAT": "fits"}, "RESPONSEFORMAT"),
    ({"QUERY": "SELECT 1 FROM ivoa.obscore", "REQUEST": "getCapabilities"}, "REQUEST"),
    ({"QUERY": "SELECT 1 FROM ivoa.obscore", "UPLOAD": "t,http://example.org/t.xml"}, "UPLOAD"),
    ({"QUERY": "SELECT 1 / 0 FROM ivoa.obscore"}, "division by zero"),
])
def test_mistakes_are_dali_errors_that_say_what_was_wrong(archive, params, message):
    text = _error(_sync(archive, **params))
    assert message in text and text.strip()


def test_pyvo_shows_the_message_of_an_error(archive):
    with pytest.raises(pyvo.dal.DALQueryError) as raised:
        _service(archive).run_sync("SELECT no_such_column FROM ivoa.obscore")
    assert "no_such_column" in str(raised.value)


@pytest.mark.parametrize("adql", [
    "SELECT * FROM ivoa.obscore WHERE 1 = CONTAINS(POINT('ICRS', s_ra, s_dec), "
    "CIRCLE('ICRS', __import__('os').system('touch /tmp/tap-pwned'), 2, 1))",
    "SELECT pg_sleep(10) FROM ivoa.obscore",
    "SELECT usename, passwd FROM pg_catalog.pg_shadow",
    "SELECT table_name FROM information_schema.tables",
    "SELECT obs_id FROM ivoa.obscore; DELETE FROM files",
])
def test_hostile_queries_are_refused_quickly(archive, adql):
    started = time.monotonic()
    _error(_sync(archive, QUERY=adql))
    assert time.monotonic() - started < 1.0


def test_a_query_running_past_the_limit_is_stopped_with_an_error(archive):
    started = time.monotonic()
    tables = ", ".join(f"ivoa.obscore AS t{i}" for i in range(9))  # 12 to the 9th rows
    text = _error(_sync(archive, QUERY=f"SELECT COUNT(*) FROM {tables}"))
    assert "longer than its limit of 2 s" in text
    assert time.monotonic() - started < 10


GEOMETRY_QUERIES = {
    "POINT": ("SELECT POINT('ICRS', s_ra, s_dec) AS x FROM ivoa.obscore WHERE obs_id LIKE '%/sky/f0.fits'",
              [150.0, 2.0]),
    "CIRCLE": ("SELECT CIRCLE('ICRS', s_ra, s_dec, 0.5) AS x FROM ivoa.obscore WHERE obs_id LIKE '%/sky/f0.fits'",
               [150.0, 2.0, 0.5]),
    "BOX": ("SELECT BOX('ICRS', 150, 2, 1, 1) AS x FROM ivoa.obscore WHERE obs_id LIKE '%/sky/f0.fits'",
            [149.5, 1.5, 150.5, 1.5, 150.5, 2.5, 149.5, 2.5]),
    "POLYGON": ("SELECT POLYGON('ICRS', 10, 20, 11, 20, 11, 21) AS x FROM ivoa.obscore "
                "WHERE obs_id LIKE '%/sky/f0.fits'", [10, 20, 11, 20, 11, 21]),
    "CONTAINS": ("SELECT COUNT(*) AS x FROM ivoa.obscore "
                 "WHERE 1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 150.0, 2.0, 0.015))", 2),
    "INTERSECTS": ("SELECT COUNT(*) AS x FROM ivoa.obscore "
                   "WHERE 1 = INTERSECTS(s_region, CIRCLE('ICRS', 149.9, 2.0, 0.055))", 1),
    "DISTANCE": ("SELECT DISTANCE(POINT('ICRS', s_ra, s_dec), POINT('ICRS', 150.0, 2.0)) AS x "
                 "FROM ivoa.obscore WHERE obs_id LIKE '%/sky/f1.fits'", 0.01 * 0.99939),
    "AREA": ("SELECT AREA(s_region) AS x FROM ivoa.obscore WHERE obs_id LIKE '%/sky/f0.fits'", 0.1 * 0.1),
    "CENTROID": ("SELECT CENTROID(CIRCLE('ICRS', s_ra, s_dec, 0.5)) AS x FROM ivoa.obscore "
                 "WHERE obs_id LIKE '%/sky/f1.fits'", [150.01, 2.0]),
    "COORDSYS": ("SELECT COORDSYS(POINT('ICRS', s_ra, s_dec)) AS x FROM ivoa.obscore "
                 "WHERE obs_id LIKE '%/sky/f1.fits'", "ICRS"),
    "COORD1": ("SELECT COORD1(POINT('ICRS', s_ra, s_dec)) AS x FROM ivoa.obscore WHERE obs_id LIKE '%/sky/f1.fits'",
               150.01),
    "COORD2": ("SELECT COORD2(POINT('ICRS', s_ra, s_dec)) AS x FROM ivoa.obscore WHERE obs_id LIKE '%/sky/f1.fits'",
               2.0),
}


@pytest.mark.parametrize("feature", tap.GEOMETRY)
def test_every_declared_geometry_feature_works(archive, feature):
    adql, expected = GEOMETRY_QUERIES[feature]
    (row,) = _service(archive).run_sync(adql)
    value = row["x"]
    if isinstance(expected, str):
        assert value == expected
    else:
        assert (list(value) if hasattr(value, "__len__") else value) == pytest.approx(expected, rel=1e-3)


def test_a_one_arcminute_cone_uses_the_index(archive):
    connection = archive["engine"].raw_connection()
    try:
        sql = query.statement(connection, "SELECT obs_id FROM ivoa.obscore WHERE 1 = CONTAINS("
                                          "POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 150.0, 2.0, 0.0166667))", 10)
        with published(connection, [], base_url="http://x", authority="obs.example.org", timeout=10) as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")  # a table this small would be scanned anyway
            cursor.execute("EXPLAIN " + sql)
            plan = "\n".join(r[0] for r in cursor.fetchall())
    finally:
        connection.close()
    assert "files_pos" in plan, plan


def test_capabilities_tell_pyvo_the_limits_and_the_language(archive):
    service = _service(archive)
    assert (service.maxrec, service.hardlimit) == (3, 10)
    capability = service.get_tap_capability()
    assert capability.interfaces[0].accessurls[0].content == archive["tap"]
    assert [m.ivo_id for m in capability.datamodels] == ["ivo://ivoa.net/std/ObsCore#core-1.1"]
    adql = capability.get_adql()
    assert {f.form for f in adql.get_feature_list("ivo://ivoa.net/std/TAPRegExt#features-adqlgeo")} \
        == set(tap.GEOMETRY)
    standards = {c.standardid for c in service.capabilities}
    assert standards == {"ivo://ivoa.net/std/TAP", "ivo://ivoa.net/std/VOSI#capabilities",
                         "ivo://ivoa.net/std/VOSI#availability", "ivo://ivoa.net/std/VOSI#tables-1.1"}


def test_capabilities_name_the_archive_as_its_users_see_it(archive):
    response = archive["server"].get("/ivoa/tap/capabilities",
                                     headers={**FRONT_END, "X-Forwarded-Host": "archive.example.org",
                                              "X-Forwarded-Proto": "https"})
    assert ">https://archive.example.org/ivoa/tap<" in response.text


def test_vosi_tables_describe_the_published_tables(archive):
    tables = _service(archive).tables
    assert {"ivoa.obscore", "archive.files", "TAP_SCHEMA.schemas", "TAP_SCHEMA.keys"} <= set(tables.keys())
    obscore = tables["ivoa.obscore"]
    assert len(obscore.columns) == 30
    s_region = next(c for c in obscore.columns if c.name == "s_region")
    assert (s_region.datatype.content, s_region.datatype.arraysize, s_region.unit) == ("char", "*", None)
    (key,) = tables["archive.files"].foreignkeys
    assert key.targettable == "ivoa.obscore"
    minimal = archive["server"].get("/ivoa/tap/tables", params={"detail": "min"})
    assert "<column" not in minimal.text and "<name>ivoa.obscore</name>" in minimal.text
    one = archive["server"].get("/ivoa/tap/tables/ivoa.obscore")
    assert one.status_code == 200 and one.text.count("<column") == 30
    assert archive["server"].get("/ivoa/tap/tables/files").status_code == 404


def test_availability_says_the_database_answers(archive):
    response = archive["server"].get("/ivoa/tap/availability")
    assert pyvo.io.vosi.parse_availability(io.BytesIO(response.content)).available is True


# The same questions, asked of the JSON API and of TAP: (JSON parameters, ADQL condition on archive.files).
QUESTIONS = [
    ({"path": f"{OLD}/cam/"}, f"path LIKE '{OLD}/cam/%'"),
    ({"ra": "150.02", "dec": "2", "radius": "0.05"},
     "1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 150.02, 2, 0.05))"),
    ({"start": "2019-05-03T00:00:00Z", "end": "2019-05-03T04:00:00Z"},
     "obs_start >= '2019-05-03T00:00:00' AND obs_start < '2019-05-03T04:00:00'"),
    ({"object": "SN", "object_match": "prefix"}, "object LIKE 'SN%'"),
]


@pytest.mark.parametrize("user", [None, "alice", "bob"])
@pytest.mark.parametrize("question", range(len(QUESTIONS)))
def test_tap_and_the_json_api_answer_each_caller_alike(archive, user, question):
    params, condition = QUESTIONS[question]
    headers = {"Authorization": f"Bearer {archive['tokens'][user]}"} if user else {}
    answer = archive["server"].get("/api/v1/files", params={**params, "limit": 50, "fields": "id"}, headers=headers)
    assert answer.status_code == 200, answer.text
    by_json = {row["id"] for row in answer.json()["results"]}
    by_tap = {row["id"] for row in _service(archive, user).run_sync(f"SELECT id FROM archive.files WHERE {condition}",
                                                                    maxrec=10)}
    assert by_tap == by_json and (by_json or question == 3 and user != "alice")


@pytest.mark.parametrize("user", [None, "alice", "bob"])
def test_tap_and_the_json_api_count_each_caller_alike(archive, user):
    headers = {"Authorization": f"Bearer {archive['tokens'][user]}"} if user else {}
    answer = archive["server"].get("/api/v1/files", params={"count": "true", "limit": 1}, headers=headers)
    (row,) = _service(archive, user).run_sync("SELECT COUNT(*) AS n FROM archive.files")
    assert row["n"] == answer.json()["count"]


def test_a_result_too_large_for_memory_is_refused_saying_so(archive, monkeypatch):
    monkeypatch.setattr(query, "MAX_RESULT_CHARACTERS", 2000)
    connection = archive["engine"].raw_connection()
    try:
        with pytest.raises(query.QueryError, match="the result is larger than"):
            query.run_adql(connection, [], "SELECT * FROM ivoa.obscore AS a, ivoa.obscore AS b", maxrec=1000,
                           timeout=10, base_url="http://x", authority="obs.example.org")
    finally:
        connection.close()


def test_a_query_may_write_only_so_much_to_temporary_files(archive):
    connection = archive["engine"].raw_connection()
    try:
        with published(connection, [], base_url="http://x", authority="a.org", timeout=10) as cursor:
            cursor.execute("SHOW temp_file_limit")
            assert cursor.fetchone() == ("2GB",)
    finally:
        connection.close()
