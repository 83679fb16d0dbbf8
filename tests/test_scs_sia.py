"""Simple Cone Search and SIAv2 as pyvo and validators see them, on real gunicorn, and the
ObsCore terms (bands, spectrum instruments) the daemon writes from its configuration."""

from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess

import falcon.testing
import pytest
import requests
import yaml
from astropy.io.votable import parse
from pyvo.dal import DALQueryError, SCSService
from pyvo.dal.sia2 import SIA2Service

from api.app import create_app
from api.ivoa.session import published
from api.ivoa.siaquery import condition
from apiserver import NIGHT, OLD, ApiServer, build_archive
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
