"""GET /api/v1/calibrations, in process against real PostgreSQL: the calibration frames of a
science frame are those of its instrument and nights, in its filter (flats) and binning,
and only those the caller may see, for files the caller may see."""

from __future__ import annotations

import pytest

from apiserver import NIGHT, OLD, build_archive
from fitsmaker import image
from test_api_contract import assert_names, client_for

NEXT, LATER = "2019-05/03", "2019-05/05"
FRAMES = {  # path: cards
    f"{OLD}/kast/science.fits": {"OBSTYPE": "OBJECT", "FILTER": "R", "CCDSUM": "2 2"},
    f"{OLD}/kast/science-b.fits": {"OBSTYPE": "OBJECT", "FILTER": "B", "CCDSUM": "1 1"},
    f"{OLD}/kast/bias.fits": {"OBSTYPE": "BIAS", "CCDSUM": "2 2"},
    f"{OLD}/kast/bias-1x1.fits": {"OBSTYPE": "BIAS", "CCDSUM": "1 1"},
    f"{OLD}/kast/flat-r.fits": {"OBSTYPE": "FLAT", "FILTER": "R", "CCDSUM": "2 2"},
    f"{OLD}/kast/flat-b.fits": {"OBSTYPE": "FLAT", "FILTER": "B", "CCDSUM": "2 2"},
    f"{NEXT}/kast/arc.fits": {"OBSTYPE": "ARC", "FILTER": "B"},  # no binning: it may go with any
    f"{LATER}/kast/dark.fits": {"OBSTYPE": "DARK", "CCDSUM": "2 2"},
    f"{OLD}/other/bias.fits": {"OBSTYPE": "BIAS", "CCDSUM": "2 2"},
    f"{NIGHT}/cam/flat.fits": {"OBSTYPE": "FLAT", "PROPID": "P2"},
}


def _frames(root):
    for path, cards in FRAMES.items():
        image(root / path, {"DATE-OBS": f"{path[:7]}-{path[8:10]}T05:00:00", "OBJECT": path, **cards})


@pytest.fixture(scope="module")
def archive(cluster, tmp_path_factory):
    built = build_archive(cluster, tmp_path_factory.mktemp("calibrations"), extra=_frames)
    built["client"] = client_for(built["config"], built["engine"])
    built["names"] = {v: k for k, v in built["ids"].items()}
    yield built
    built["close"]()


def calibrations(archive, paths, headers=None, **params) -> dict:
    ids = ",".join(str(archive["ids"][p]) for p in paths)
    answer = archive["client"].simulate_get("/api/v1/calibrations", params={"ids": ids, **params}, headers=headers)
    assert answer.status_code == 200, answer.text
    return {archive["names"][r["id"]]: [archive["names"][i] for i in r["for"]] for r in answer.json["results"]}


def test_calibrations_match_instrument_night_filter_and_binning(archive):
    science = f"{OLD}/kast/science.fits"
    assert calibrations(archive, [science]) == {
        f"{OLD}/kast/bias.fits": [science], f"{OLD}/kast/flat-r.fits": [science], f"{NEXT}/kast/arc.fits": [science]}


def test_more_nights_reach_further(archive):
    science = f"{OLD}/kast/science.fits"
    assert f"{LATER}/kast/dark.fits" not in calibrations(archive, [science], nights="2")
    assert f"{LATER}/kast/dark.fits" in calibrations(archive, [science], nights="3")
    assert f"{NEXT}/kast/arc.fits" not in calibrations(archive, [science], nights="0")


def test_each_calibration_says_which_files_it_goes_with(archive):
    red, blue = f"{OLD}/kast/science.fits", f"{OLD}/kast/science-b.fits"
    found = calibrations(archive, [red, blue])
    assert found[f"{NEXT}/kast/arc.fits"] == sorted([red, blue], key=lambda p: archive["ids"][p])
    assert found[f"{OLD}/kast/bias-1x1.fits"] == [blue]
    assert found[f"{OLD}/kast/flat-r.fits"] == [red]
    assert f"{OLD}/kast/flat-b.fits" not in found  # blue, but binned 2x2 where the blue frame is 1x1


def test_a_file_the_caller_may_not_see_brings_no_calibrations(archive):
    mine = f"{NIGHT}/cam/mine.fits"
    assert calibrations(archive, [mine]) == {}
    alice = {"Authorization": f"Bearer {archive['tokens']['alice']}"}
    for path in calibrations(archive, [mine], alice):  # only what alice may read herself
        assert archive["client"].simulate_get(f"/api/v1/files/{archive['ids'][path]}", headers=alice).status_code == 200


@pytest.mark.parametrize("params, name", [({}, "ids"), ({"ids": "1,x"}, "ids"), ({"ids": "0"}, "ids"),
                                          ({"ids": ",".join(["1"] * 51)}, "ids"), ({"ids": "1", "nights": "31"}, "nights"),
                                          ({"ids": "1", "filter": "R"}, "filter")])
def test_a_mistake_is_a_400_naming_the_parameter(archive, params, name):
    assert_names(archive["client"].simulate_get("/api/v1/calibrations", params=params), 400, name)
