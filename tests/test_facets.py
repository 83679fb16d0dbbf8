"""GET /api/v1/facets and GET /api/v1/whoami, in process against real PostgreSQL: the values
the search form offers are those of the files the caller may see, under the search's filters."""

from __future__ import annotations

import pytest

from apiserver import FRONT_END, NIGHT, OLD, build_archive
from test_api_contract import assert_names, client_for
from fitsmaker import image


def _more_files(root):
    image(root / OLD / "spec" / "arc.fits", {"OBJECT": "HeNeAr", "INSTRUME": "KAST", "TELESCOP": "Shane",
                                             "OBSTYPE": "ARC", "FILTER": "none", "DATE-OBS": "2019-05-03T02:00:00"})
    image(root / NIGHT / "spec" / "hidden.fits", {"OBJECT": "secret", "INSTRUME": "Secretcam", "PROPID": "P2",
                                                  "FILTER": "Halpha", "DATE-OBS": "2019-05-03T02:00:00"})


@pytest.fixture(scope="module")
def archive(cluster, tmp_path_factory):
    built = build_archive(cluster, tmp_path_factory.mktemp("facets"), extra=_more_files)
    built["client"] = client_for(built["config"], built["engine"])
    yield built
    built["close"]()


def facets(archive, headers=None, **params) -> dict:
    response = archive["client"].simulate_get("/api/v1/facets", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return {name: {v["value"]: v["count"] for v in values} for name, values in response.json.items()}


def count(archive, headers=None, **params) -> int:
    return archive["client"].simulate_get("/api/v1/files", params={**params, "count": "true"},
                                          headers=headers).json["count"]


def test_values_are_counted_case_insensitively_as_the_search_matches_them(archive):
    found = facets(archive)
    assert {v.lower(): n for v, n in found["instrument"].items()}["kast"] == count(archive, instrument="kast") == 2
    assert len([v for v in found["instrument"] if v.lower() == "kast"]) == 1  # Kast and KAST are one
    assert found["telescope"]["Shane"] == count(archive, telescope="shane")
    assert found["frame_type"]["arc"] == count(archive, frame_type="ARC") == 1


def test_a_value_only_hidden_files_carry_is_not_offered(archive):
    assert "Secretcam" not in facets(archive)["instrument"]
    bob = {"Authorization": f"Bearer {archive['tokens']['bob']}"}
    assert "Halpha" not in facets(archive, bob)["filter"]


def test_facets_follow_the_search_filters_but_not_their_own(archive):
    found = facets(archive, instrument="kast", object="HeNeAr")
    assert found["frame_type"] == {"arc": 1}
    found = facets(archive, instrument="kast")
    assert sum(found["frame_type"].values()) == count(archive, instrument="kast")
    assert "cam" in found["instrument"]  # choosing kast still offers the other instruments
    assert facets(archive, night="1999-01-01") == {"instrument": {}, "telescope": {}, "frame_type": {}, "filter": {}}


@pytest.mark.parametrize("params, name", [({"radius": "x"}, "radius"), ({"limit": "5"}, "limit"),
                                          ({"instrument": ""}, "instrument"), ({"ra": "10"}, "dec")])
def test_a_mistake_is_a_400_naming_the_parameter(archive, params, name):
    assert_names(archive["client"].simulate_get("/api/v1/facets", params=params), 400, name)


@pytest.mark.parametrize("caller, expected", [
    ("anonymous", {"user": None, "programs": [], "by": None}),
    ("alice", {"user": "alice", "programs": ["P1"], "by": "token"}),
    ("front end", {"user": "alice", "programs": ["P1"], "by": "front end"}),
])
def test_whoami_says_who_the_api_takes_the_caller_for(archive, caller, expected):
    headers = {"anonymous": {}, "alice": {"Authorization": f"Bearer {archive['tokens']['alice']}"},
               "front end": FRONT_END}[caller]
    assert archive["client"].simulate_get("/api/v1/whoami", headers=headers).json == expected


def test_whoami_refuses_a_revoked_token(archive):
    response = archive["client"].simulate_get("/api/v1/whoami", headers={"Authorization": f"Bearer {archive['revoked']}"})
    assert response.status_code == 401
