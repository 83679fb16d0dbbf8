"""Simple Cone Search and SIAv2 as pyvo and validators see them, on real gunicorn, and the
ObsCore terms (bands, spectrum instruments) the daemon writes from its configuration."""

from __future__ import annotations

import dataclasses
import io
import math
import re
import shutil
import signal
import subprocess

import falcon.testing
import psycopg2
import pytest
import pyvo
import requests
import yaml
from astropy.io.votable import parse
from astropy.time import Time
from pyvo.dal import DALQueryError, SCSService
from pyvo.dal.sia2 import SIA2Service

from api.app import create_app
from api.ivoa import catalog
from api.ivoa.adql import Published, translate
from api.ivoa.session import published
from api.ivoa.siaquery import condition
from conftest import fresh_database, write_config
from daemonproc import Daemon, wait_until
from apiserver import FRONT_END, NIGHT, OLD, ApiServer, build_archive
from archive_daemon import cli, ivoaterms
from archive_daemon.config import IvoaConfig, load_config
from fitsmaker import WCS_CARDS, image

NGC3115 = (151.308, -7.7186)  # where every file but these two points
M31 = (10.6846, 41.2692)
FIELD = (150.0, 2.0)          # the centre of the one file with a footprint (0.1 degree across)
IVOA = {"authority": "obs.example.org", "default_maxrec": 50, "max_maxrec": 60,
        "bands": {"V": [500, 590]}, "spectrum_instruments": ["KAST"]}
FRAMES = {"field": f"{OLD}/cam/field.fits"}
PUBLIC_NEAR = {f"{OLD}/cam/public1.fits", f"{OLD}/cam/big.fits", f"{OLD}/cam/escape.fits"}


def _field(root):
    # A position from its WCS only, so a footprint; filter V, whose band is configured.
    image(root / FRAMES["field"], {**WCS_CARDS, "RA": None, "DEC": None, "OBJECT": "a field", "FILTER": "V",
                                   "INSTRUME": "Direct", "DATE-OBS": "2019-05-03T09:00:00"})


def _upgrade(archive) -> int:
    """`archive-daemon db upgrade` with the archive's configuration (it writes the terms)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARCHIVE_DATABASE_URL", archive["url"])
        return cli.main(["--config", str(archive["config_path"]), "db", "upgrade"])


@pytest.fixture(scope="module")
def archive(cluster, tmp_path_factory):
    base = tmp_path_factory.mktemp("scs_sia")
    built = build_archive(cluster, base, extra=_field)
    built["config_path"].write_text(yaml.safe_dump({**built["settings"], "ivoa": IVOA}))
    built["config"] = load_config(str(built["config_path"]))
    assert _upgrade(built) == 0
    yield built
    built["close"]()


@pytest.fixture(scope="module")
def server(archive, tmp_path_factory):
    api = ApiServer(archive["config_path"], archive["url"], tmp_path_factory.mktemp("scs_sia_log") / "api.log")
    yield api
    api.stop()


def _obscore(archive, sql, params=()):
    connection = archive["engine"].raw_connection()
    try:
        with published(connection, [], base_url="https://archive.example.org", authority="obs.example.org",
                       timeout=10) as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        connection.close()


def _session(token: str | None = None) -> requests.Session:
    session = requests.Session()
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def _paths(dids) -> set[str]:
    return {str(did).split("?data/", 1)[1] for did in dids}


# --- ObsCore terms from the configuration --------------------------------------------------

def test_db_upgrade_publishes_the_configured_bands_and_spectrum_instruments(archive):
    query = "SELECT em_min, em_max, dataproduct_type FROM ivoa.obscore WHERE obs_id = %s"
    field, kast = f"data/{FRAMES['field']}", f"data/{OLD}/cam/public1.fits"
    connection = archive["engine"].raw_connection()
    try:
        ivoaterms.write(connection, IvoaConfig())  # none configured
        assert _obscore(archive, query, (field,)) == [(None, None, "image")]
        assert _obscore(archive, query, (kast,)) == [(None, None, "image")]
    finally:
        connection.close()
    assert _upgrade(archive) == 0
    (low, high, kind), = _obscore(archive, query, (field,))
    assert (low, high, kind) == (pytest.approx(500e-9), pytest.approx(590e-9), "image")
    assert _obscore(archive, query, (kast,)) == [(None, None, "spectrum")]  # KAST configured, Kast in the header


def test_writing_the_terms_replaces_every_row(archive):
    connection = archive["engine"].raw_connection()
    try:
        ivoaterms.write(connection, dataclasses.replace(archive["config"].ivoa, bands=(("r", 5.5e-7, 7e-7),),
                                                        spectrum_instruments=("direct",)))
        rows = _obscore(archive, "SELECT obs_id, em_min, dataproduct_type FROM ivoa.obscore "
                                 "WHERE dataproduct_type <> 'image' OR em_min IS NOT NULL")
        assert rows == [(f"data/{FRAMES['field']}", None, "spectrum")]
    finally:
        ivoaterms.write(connection, archive["config"].ivoa)
        connection.close()


def test_the_leading_daemon_writes_the_terms_when_it_leads_and_on_reload(tmp_path, archive_root, database_url, engine):
    config = write_config(tmp_path, archive_root, ivoa={"bands": {"R": [550, 700]}})
    daemon = Daemon(config, database_url, tmp_path)
    try:
        daemon.start()
        assert _terms(engine) == ([("r", pytest.approx(550e-9), pytest.approx(700e-9))], [])
        config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()),
                                          "ivoa": {"spectrum_instruments": ["Kast"]}}))
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: _terms(engine) == ([], [("kast", "spectrum")]), what="the reloaded terms")
    finally:
        daemon.stop()


def _terms(engine):
    with engine.connect() as connection:
        return ([tuple(r) for r in connection.exec_driver_sql("SELECT * FROM ivoa_bands")],
                [tuple(r) for r in connection.exec_driver_sql("SELECT * FROM ivoa_instruments")])


# --- Simple Cone Search ---------------------------------------------------------------------

def _scs(server, session=None):
    return SCSService(server.base + "/ivoa/scs", session=session)


def test_cone_search_finds_public_files_and_the_callers_own(server, archive):
    anonymous = _scs(server).search(pos=NGC3115, radius=0.1)
    assert _paths(anonymous.getcolumn("obs_publisher_did")) == PUBLIC_NEAR
    owner = _scs(server, _session(archive["tokens"]["alice"])).search(pos=NGC3115, radius=0.1)
    assert _paths(owner.getcolumn("obs_publisher_did")) == PUBLIC_NEAR | {f"{NIGHT}/cam/mine.fits"}
    stranger = _scs(server, _session(archive["tokens"]["bob"])).search(pos=NGC3115, radius=0.1)
    assert _paths(stranger.getcolumn("obs_publisher_did")) == PUBLIC_NEAR
    record = owner[0]
    assert record.pos.ra.deg == pytest.approx(NGC3115[0], abs=0.01)  # through POS_EQ_RA_MAIN, POS_EQ_DEC_MAIN
    assert len(set(owner.getcolumn("obs_publisher_did"))) == len(owner)


def test_cone_search_columns_carry_the_ucd1_words_scs_requires(server):
    table = parse(io.BytesIO(server.get("/ivoa/scs", params={"RA": M31[0], "DEC": M31[1], "SR": 0.1}).content))
    fields = table.get_first_table().fields
    by_ucd = {f.ucd: f for f in fields}
    assert by_ucd["ID_MAIN"].name == "obs_publisher_did" and by_ucd["ID_MAIN"].datatype == "char"
    assert by_ucd["POS_EQ_RA_MAIN"].datatype == by_ucd["POS_EQ_DEC_MAIN"].datatype == "double"
    assert len(table.resources) == 1 and len(table.resources[0].tables) == 1
    assert _paths(table.get_first_table().array["obs_publisher_did"]) == {f"{OLD}/cam/public2.fits"}


def test_sr_zero_returns_the_columns_and_no_rows(server):
    table = parse(io.BytesIO(server.get("/ivoa/scs", params={"RA": 0, "DEC": 90, "SR": 0}).content))
    assert len(table.get_first_table().array) == 0
    assert {"ID_MAIN", "POS_EQ_RA_MAIN", "POS_EQ_DEC_MAIN"} <= {f.ucd for f in table.get_first_table().fields}
    assert _scs(server).columns  # pyvo's own metadata query (RA=0, DEC=0, SR=0)


def test_verb_chooses_how_many_columns(server):
    counts = []
    for verb in (1, 2, 3):
        table = parse(io.BytesIO(server.get("/ivoa/scs", params={**_cone(NGC3115, 0.1), "VERB": verb}).content))
        counts.append(len(table.get_first_table().fields))
    assert counts[0] < counts[1] < counts[2] == 30


def _cone(position, radius):
    return {"RA": position[0], "DEC": position[1], "SR": radius}


def test_rows_beyond_maxrec_are_cut_and_said_to_be(server):
    answer = server.get("/ivoa/scs", params={**_cone(NGC3115, 0.1), "MAXREC": 2})
    table = parse(io.BytesIO(answer.content))
    assert len(table.get_first_table().array) == 2
    assert [i.value for i in table.resources[0].infos if i.name == "QUERY_STATUS"] == ["OK", "OVERFLOW"]


@pytest.mark.parametrize("params, named", [
    ({"DEC": 1, "SR": 1}, "RA"), ({"RA": "as3f", "DEC": 1, "SR": 1}, "RA"), ({"RA": 400, "DEC": 1, "SR": 1}, "RA"),
    ({"RA": 1, "SR": 1}, "DEC"), ({"RA": 1, "DEC": 91, "SR": 1}, "DEC"), ({"RA": 1, "DEC": "NaN", "SR": 1}, "DEC"),
    ({"RA": 1, "DEC": 1}, "SR"), ({"RA": 1, "DEC": 1, "SR": -1}, "SR"), ({"RA": 1, "DEC": 1, "SR": 11}, "SR"),
    ({"RA": 1, "DEC": 1, "SR": "inf"}, "SR"), ({**_cone(M31, 1), "VERB": 4}, "VERB"),
    ({**_cone(M31, 1), "MAXREC": "-1"}, "MAXREC"),
])
def test_cone_search_errors_are_votables_with_an_error_info(server, params, named):
    answer = server.get("/ivoa/scs", params=params)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/xml")
    table = parse(io.BytesIO(answer.content))
    (error,) = [i for i in table.infos if i.name == "Error"]
    assert error.ID == "Error" and error.value.startswith(f"{named}: "), error.value


def test_pyvo_reports_the_error_and_the_cap_it_ran_into(server):
    with pytest.raises(DALQueryError, match=r"SR: .* 10 degrees \(api.max_radius_deg\)"):
        _scs(server).search(pos=M31, radius=11)


# --- SIAv2 ----------------------------------------------------------------------------------

def _sia(server, session=None):
    return SIA2Service(server.base + "/ivoa/sia2", session=session)


def _found(results) -> set[str]:
    return _paths(results.to_table()["obs_publisher_did"])


def test_sia_finds_public_files_and_the_callers_own(server, archive):
    circle = (*NGC3115, 0.1)
    assert _found(_sia(server).search(pos=circle)) == PUBLIC_NEAR
    owner = _sia(server, _session(archive["tokens"]["alice"])).search(pos=circle)
    assert _found(owner) == PUBLIC_NEAR | {f"{NIGHT}/cam/mine.fits"}
    assert len(owner.to_table().colnames) == 30 and owner[0].access_url.startswith(server.base + "/api/v1/files/")


def test_a_file_is_found_through_its_footprint_and_one_without_through_its_point(server):
    # The circle overlaps the field's edge (0.05 degree from its centre) without holding its centre.
    assert _found(_sia(server).search(pos=(FIELD[0] + 0.07, FIELD[1], 0.03))) == {FRAMES["field"]}
    assert _found(_sia(server).search(pos=(FIELD[0] + 0.09, FIELD[1], 0.03))) == set()
    assert _found(_sia(server).search(pos=(*M31, 0.01))) == {f"{OLD}/cam/public2.fits"}  # no footprint


def _field_corner(archive) -> tuple[float, float]:
    """The field's corner of greatest right ascension and declination, in degrees, as stored."""
    connection = psycopg2.connect(archive["url"])
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_sphere_output('RAD')")
            cursor.execute("SELECT footprint::text FROM files WHERE path = %s", (FRAMES["field"],))
            (text,), = cursor.fetchall()
    finally:
        connection.close()
    corners = [(math.degrees(float(ra)), math.degrees(float(dec)))
               for ra, dec in re.findall(r"\(\s*([^,\s]+)\s*,\s*([^,)\s]+)\s*\)", text)]
    return max(corners, key=lambda corner: corner[0] + corner[1])


def _degrees_apart(archive, a, b) -> float:
    connection = psycopg2.connect(archive["url"])
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT degrees(spoint(radians(%s), radians(%s)) <-> spoint(radians(%s), radians(%s)))",
                           (*a, *b))
            return cursor.fetchone()[0]
    finally:
        connection.close()


def test_a_footprint_met_only_at_its_corner_is_found(server, archive):
    # The footprint's circle (migration 0009) is searched first: its corners are its farthest
    # points, and a search that reaches one of them, barely, still finds the file.
    ra, dec = _field_corner(archive)
    beyond = (ra + 0.02 / math.cos(math.radians(dec)), dec + 0.02)  # diagonally out, about 0.028 degree
    reach = _degrees_apart(archive, (ra, dec), beyond)
    sia = _sia(server)
    assert _found(sia.search(pos=(*beyond, reach + 1e-6))) == {FRAMES["field"]}
    assert _found(sia.search(pos=(*beyond, reach - 1e-4))) == set()
    assert _found(sia.search(pos=(ra - 1e-3, ra + 0.01, dec - 1e-3, dec + 0.01))) == {FRAMES["field"]}
    triangle = (ra - 1e-3, dec - 1e-3, ra + 0.01, dec, ra, dec + 0.01)
    assert _found(sia.search(pos=triangle)) == {FRAMES["field"]}
    tap = pyvo.dal.TAPService(server.base + "/ivoa/tap")
    for adql in (f"1 = INTERSECTS(s_region, CIRCLE('ICRS', {beyond[0]!r}, {beyond[1]!r}, {reach + 1e-6!r}))",
                 f"1 = CONTAINS(POINT('ICRS', {ra - 1e-4!r}, {dec - 1e-4!r}), s_region)",
                 f"1 = INTERSECTS(POLYGON('ICRS', {', '.join(map(repr, triangle))}), s_region)"):
        rows = tap.run_sync(f"SELECT obs_publisher_did FROM ivoa.obscore WHERE {adql}")
        assert _paths(rows.to_table()["obs_publisher_did"]) == {FRAMES["field"]}, adql
    rows = tap.run_sync(f"SELECT obs_publisher_did FROM ivoa.obscore WHERE 1 = INTERSECTS(s_region, "
                        f"CIRCLE('ICRS', {beyond[0]!r}, {beyond[1]!r}, {reach - 1e-4!r}))")
    assert len(rows) == 0


def test_repeated_parameters_are_or_ed_and_different_ones_and_ed(server):
    both = _sia(server).search(pos=[(*NGC3115, 0.1), (*M31, 0.1)])
    assert _found(both) == PUBLIC_NEAR | {f"{OLD}/cam/public2.fits"}
    assert _found(_sia(server).search(pos=[(*NGC3115, 0.1), (*M31, 0.1)], exptime=(100, 200))) == \
        {f"{OLD}/cam/public2.fits"}  # EXPTIME 120 s


def test_range_and_polygon(server):
    assert _found(_sia(server).search(pos=(149, 151, 1, 3))) == {FRAMES["field"]}
    answer = server.get("/ivoa/sia2/query", params={"POS": "RANGE -Inf +Inf 40 +Inf"})
    assert _paths(parse(io.BytesIO(answer.content)).get_first_table().array["obs_publisher_did"]) == \
        {f"{OLD}/cam/public2.fits"}
    triangle = (10, 41, 11.5, 41, 10.5, 42)
    assert _found(_sia(server).search(pos=triangle)) == {f"{OLD}/cam/public2.fits"}


def test_band_time_and_the_others(server):
    assert _found(_sia(server).search(band=550e-9)) == {FRAMES["field"]}          # V: 500 to 590 nm
    assert _found(_sia(server).search(band=(600e-9, float("inf")))) == set()
    assert _found(_sia(server).search(band=(float("-inf"), 510e-9))) == {FRAMES["field"]}
    # 2019-05-03T05:00:00 to 05:00:30 UTC is MJD 58606.208333 to 58606.208681.
    at_five = _found(_sia(server).search(time=(Time(58606.2, format="mjd"), Time(58606.21, format="mjd"))))
    assert at_five == {f"{OLD}/cam/public1.fits", f"{OLD}/cam/escape.fits"}
    assert _found(_sia(server).search(instrument="Kast")) == {f"{OLD}/cam/public1.fits"}
    assert _found(_sia(server).search(data_type="spectrum")) == {f"{OLD}/cam/public1.fits"}
    assert _found(_sia(server).search(target_name="M31", calib_level=1)) == {f"{OLD}/cam/public2.fits"}
    assert _found(_sia(server).search(field_of_view=(0.05, 0.2))) == {FRAMES["field"]}
    did = f"IVO://OBS.EXAMPLE.ORG/archive?data/{OLD}/cam/public2.fits"  # IVOA identifiers: any letter case
    assert _found(_sia(server).search(publisher_did=did)) == {f"{OLD}/cam/public2.fits"}
    assert _found(_sia(server).search(pol="I")) == set()  # no file says its polarization


def test_parameter_names_in_any_case_and_posted_forms(server):
    lower = server.get("/ivoa/sia2/query", params={"pos": f"CIRCLE {M31[0]} {M31[1]} 0.1"})
    posted = requests.post(server.base + "/ivoa/sia2/query", data={"POS": f"circle {M31[0]} {M31[1]} 0.1"},
                           timeout=30)
    for answer in (lower, posted):
        assert answer.status_code == 200
        assert _paths(parse(io.BytesIO(answer.content)).get_first_table().array["obs_publisher_did"]) == \
            {f"{OLD}/cam/public2.fits"}


def test_maxrec_cuts_with_an_overflow_and_zero_gives_the_columns(server):
    cut = _sia(server).search(pos=(*NGC3115, 0.1), maxrec=1)
    assert len(cut) == 1
    infos = parse(io.BytesIO(server.get("/ivoa/sia2/query", params={"POS": f"CIRCLE {NGC3115[0]} {NGC3115[1]} 0.1",
                                                                    "MAXREC": 1}).content)).resources[0].infos
    assert [i.value for i in infos if i.name == "QUERY_STATUS"] == ["OK", "OVERFLOW"]
    empty = parse(io.BytesIO(server.get("/ivoa/sia2/query", params={"MAXREC": 0}).content))
    assert len(empty.get_first_table().array) == 0 and len(empty.get_first_table().fields) == 30
    assert [i.value for i in empty.resources[0].infos if i.name == "QUERY_STATUS"] == ["OK"]


def test_maxrec_is_capped_and_defaults_as_configured(archive):
    ivoa = dataclasses.replace(archive["config"].ivoa, default_maxrec=1, max_maxrec=2)
    client = falcon.testing.TestClient(create_app(dataclasses.replace(archive["config"], ivoa=ivoa),
                                                  archive["engine"]))
    everything = "RANGE -Inf +Inf -Inf +Inf"
    for params, rows in (({"POS": everything}, 1), ({"POS": everything, "MAXREC": 100}, 2)):
        table = parse(io.BytesIO(client.simulate_get("/ivoa/sia2/query", params=params).content)).get_first_table()
        assert len(table.array) == rows


@pytest.mark.parametrize("params, said", [
    ({"POS": "CIRCLE 1 2"}, "POS: CIRCLE takes 3 numbers"),
    ({"POS": "CIRCLE 1 NaN 1"}, "POS: 'NaN' is not a finite number"),
    ({"POS": "CIRCLE 1 2 x"}, "POS: 'x' is not a number"),
    ({"POS": "CIRCLE 1 95 1"}, "POS: declination 95"),
    ({"POS": "CIRCLE 1 2 91"}, "POS: CIRCLE radius 91"),
    ({"POS": "SQUARE 1 2 3"}, "POS: 'SQUARE 1 2 3': expected CIRCLE, RANGE or POLYGON"),
    ({"POS": "RANGE 10 5 0 1"}, "POS: RANGE: the right ascension range ends below where it starts"),
    ({"POS": "RANGE 0 400 0 1"}, "POS: RANGE: right ascension outside 0 to 360 degrees"),
    ({"POS": "RANGE 0 10 -91 1"}, "POS: RANGE: declination outside -90 to 90 degrees"),
    ({"POS": "RANGE 0 10 1"}, "POS: RANGE takes 4 numbers"),
    ({"POS": "POLYGON 1 2 3 4"}, "POS: POLYGON takes 3 or more ra dec pairs"),
    ({"POS": "POLYGON 1 2 3 4 5"}, "POS: POLYGON takes 3 or more ra dec pairs"),
    ({"POS": "POLYGON 10 20 12 22 12 20 10 22"}, "POS: a POLYGON pgsphere cannot take (a line segment overlaps"),
    ({"BAND": "abc"}, "BAND: 'abc' is not a number"),
    ({"BAND": "2 1"}, "BAND: '2 1': the lower end is above the upper"),
    ({"BAND": "1 2 3"}, "BAND: '1 2 3': expected one number or two"),
    ({"BAND": "NaN"}, "BAND: 'NaN' is not a finite number"),
    ({"TIME": "+Inf"}, "TIME: '+Inf': an interval of one infinite value"),
    ({"EXPTIME": ""}, "EXPTIME: is empty"),
    ({"CALIB": "raw"}, "CALIB: 'raw' is not a calibration level"),
    ({"MAXREC": "-1"}, "MAXREC: '-1' is not a whole number"),
    ({"MAXREC": ["1", "2"]}, "MAXREC: given more than once"),
    ({"RESPONSEFORMAT": "csv"}, "RESPONSEFORMAT: 'csv': this service answers in VOTable only"),
    ({"POS": ["CIRCLE 1 1 1"] * 101}, "POS: given 101 times; at most 100"),
])
def test_sia_errors_are_dali_error_documents(server, params, said):
    answer = server.get("/ivoa/sia2/query", params=params)
    assert answer.status_code == 400
    (status,) = [i for i in parse(io.BytesIO(answer.content)).resources[0].infos if i.name == "QUERY_STATUS"]
    assert status.value == "ERROR" and status.content.startswith(f"UsageFault: {said}"), status.content


def test_pyvo_reports_a_refused_query(server):
    with pytest.raises(DALQueryError, match="POS: a POLYGON pgsphere cannot take"):
        _sia(server).search(pos=(10, 20, 12, 22, 12, 20, 10, 22))


def test_capabilities_and_availability(server):
    capabilities = _sia(server).capabilities
    (query,) = [c for c in capabilities if c.standardid == "ivo://ivoa.net/std/SIA#query-2.0"]
    assert query.interfaces[0].accessurls[0].content == server.base + "/ivoa/sia2/query"
    assert {c.standardid for c in capabilities} >= {"ivo://ivoa.net/std/VOSI#capabilities",
                                                   "ivo://ivoa.net/std/VOSI#availability"}
    assert _sia(server).availability.available
    behind = server.get("/ivoa/sia2/capabilities", headers={"X-Forwarded-Host": "archive.example.org",
                                                              "X-Forwarded-Proto": "https",
                                                              "X-Archive-Secret": FRONT_END["X-Archive-Secret"]})
    assert "<accessURL use=\"full\">https://archive.example.org/ivoa/sia2/query</accessURL>" in behind.text


@pytest.fixture(scope="module")
def sky(cluster):
    """A database of 20,000 public files over the whole sky, every other one with a footprint."""
    url, drop = fresh_database(cluster)
    connection = psycopg2.connect(url)
    with connection.cursor() as cursor:
        cursor.execute("""
            INSERT INTO files (root, path, size, mtime, header, ra, dec, pos, footprint, footprint_circle,
                               public_date)
            SELECT 'data', 'f' || n, 2880, now(), '', ra, dec, spoint(radians(ra), radians(dec)),
                   CASE WHEN n % 2 = 0 THEN format('{(%sd,%sd),(%sd,%sd),(%sd,%sd)}', ra, dec - 0.1, ra + 0.1,
                                                   dec + 0.1, ra - 0.1, dec + 0.1)::spoly END,
                   CASE WHEN n % 2 = 0 THEN scircle(spoint(radians(ra), radians(dec)), radians(0.15)) END,
                   now() - interval '1 day'
            FROM (SELECT n, 1 + (n * 7.31) % 358 AS ra, -80 + (n * 3.17) % 160 AS dec
                  FROM generate_series(1, 20000) AS n) AS positions""")
        cursor.execute("ANALYZE files")
    connection.commit()
    yield connection
    connection.close()
    drop()


def test_positions_are_searched_through_both_indexes(sky):
    found = condition({"POS": ["CIRCLE 151.3 -7.7 0.1", "POLYGON 10 41 11.5 41 10.5 42", "RANGE 149 151 1 3"]})
    with published(sky, [], base_url="", authority="obs.example.org", timeout=10) as cursor:
        cursor.execute(f"EXPLAIN SELECT obs_id FROM ivoa.obscore WHERE {found.sql}", found.args)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "BitmapOr" in plan and "files_footprint_circle" in plan and "files_pos" in plan, plan
    assert "Seq Scan" not in plan, plan


@pytest.mark.parametrize("region", ["CIRCLE('ICRS', 151.3, -7.7, 0.1)", "POLYGON('ICRS', 10, 41, 11.5, 41, 10.5, 42)",
                                    "BOX('ICRS', 150, 2, 2, 2)", "POINT('ICRS', 150, 2)"])
def test_adql_on_footprints_is_answered_through_the_index_of_their_circles(sky, region):
    for adql in (f"SELECT obs_id FROM ivoa.obscore WHERE 1 = INTERSECTS(s_region, {region})",
                 f"SELECT path FROM archive.files AS f WHERE 1 = CONTAINS({region}, f.footprint)"):
        sql = translate(adql, Published(catalog.load(sky).columns_by_table()))
        with published(sky, [], base_url="", authority="obs.example.org", timeout=10) as cursor:
            cursor.execute("EXPLAIN " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "files_footprint_circle" in plan and "Seq Scan" not in plan, plan


# --- validators ------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("stilts") is None, reason="STILTS is not installed")
@pytest.mark.parametrize("path, params", [
    ("/ivoa/scs", _cone(NGC3115, 0.1)), ("/ivoa/scs", {"RA": 0, "DEC": 0, "SR": 0}),
    ("/ivoa/scs", {"RA": "x", "DEC": 0, "SR": 1}),
    ("/ivoa/sia2/query", {"POS": f"CIRCLE {FIELD[0]} {FIELD[1]} 1"}), ("/ivoa/sia2/query", {"MAXREC": 0}),
    ("/ivoa/sia2/query", {"MAXREC": 1}),  # a file with no footprint: an empty s_region
    ("/ivoa/sia2/query", {"BAND": "x"}),
])
def test_votlint_finds_nothing_wrong(server, tmp_path, path, params):
    document = tmp_path / "answer.xml"
    document.write_bytes(server.get(path, params=params).content)
    report = subprocess.run(["stilts", "votlint", f"votable={document}"], capture_output=True, text=True, timeout=120)
    # Errors and warnings; newer STILTS also notes (INFO) that ObsCore's own xtype for
    # s_region, adql:REGION, is not one of DALI's.
    complaints = [line for line in report.stdout.splitlines() if not line.startswith("INFO ")]
    assert report.returncode == 0 and not complaints, report.stdout + report.stderr
