"""How many files a search reports: exact up to api.exact_count_limit, an estimate flagged as
one beyond it, and either way only the files the caller may see."""

from __future__ import annotations

import pytest

from api.counts import about
from apiserver import NIGHT, build_archive
from fitsmaker import image
from test_api_contract import client_for, member

HIDDEN = 30  # proprietary files of a program nobody here belongs to: far more than the visible ones


def _hidden_files(root):
    for i in range(HIDDEN):
        image(root / NIGHT / "cam" / f"hidden{i:02}.fits", {"OBJECT": "secret", "PROPID": "P2",
                                                             "DATE-OBS": f"{NIGHT.replace('/', '-')}T23:00:00"})


@pytest.fixture(scope="module")
def archive(cluster, tmp_path_factory):
    built = build_archive(cluster, tmp_path_factory.mktemp("counts"), extra=_hidden_files)
    built["exact"] = client_for(built["config"], built["engine"])
    built["estimating"] = client_for(built["config"], built["engine"], exact_count_limit=2)
    yield built
    built["close"]()


def every_page(client, headers=None, **params) -> tuple[dict, list[str]]:
    """The first page's answer, and the paths of every page."""
    first = page = client.simulate_get("/api/v1/files", params={**params, "limit": 2}, headers=headers).json
    paths = []
    while True:
        paths += [r["path"] for r in page["results"]]
        if not page["next"]:
            return first, paths
        page = client.simulate_get("/api/v1/files", query_string=page["next"].split("?", 1)[1], headers=headers).json


def test_a_small_archive_counts_exactly(archive):
    first, paths = every_page(archive["exact"])
    assert (first["count"], first["count_exact"]) == (len(paths), True)
    assert archive["exact"].simulate_get("/api/v1/files", params={"count": "true"}).json == \
        {"count": len(paths), "count_exact": True}
    csv = archive["exact"].simulate_get("/api/v1/files", params={"format": "csv"})
    assert (csv.headers["X-Total-Count"], csv.headers["X-Count-Exact"]) == (str(len(paths)), "true")


def test_a_search_past_the_limit_gets_an_estimate_said_to_be_one(archive):
    client = archive["estimating"]
    broad = client.simulate_get("/api/v1/files").json
    assert broad["count_exact"] is False and broad["count"] > 2
    assert client.simulate_get("/api/v1/files", params={"count": "true"}).json["count_exact"] is False
    for fmt in ("csv", "votable"):
        response = client.simulate_get("/api/v1/files", params={"format": fmt})
        assert response.headers["X-Count-Exact"] == "false"
        assert response.headers["X-Total-Count"] == str(broad["count"])
    narrow = client.simulate_get("/api/v1/files", params={"object": "m31"}).json
    assert (narrow["count"], narrow["count_exact"]) == (1, True)


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_an_estimate_counts_only_the_files_the_caller_may_see(archive, who):
    # A table this small is sampled whole, so the estimate is the visible count: the hidden
    # files, ten times as many, add nothing to it (the planner's estimate would count them).
    headers = member(archive) if who == "member" else None
    first, paths = every_page(archive["estimating"], headers)
    assert first["count_exact"] is False
    assert first["count"] == len(paths) < HIDDEN


def test_facets_past_the_limit_are_estimated_from_visible_files_too(archive):
    facets = archive["estimating"].simulate_get("/api/v1/facets").json
    assert {v["count_exact"] for values in facets.values() for v in values} == {False}
    exact = archive["exact"].simulate_get("/api/v1/facets").json
    assert exact["telescope"] and {v["count_exact"] for v in exact["telescope"]} == {True}
    assert [(v["value"], v["count"]) for v in facets["telescope"]] == [(v["value"], v["count"]) for v in exact["telescope"]]


@pytest.mark.parametrize("value, above, shown", [
    (1_234_567, 0, 1_200_000), (15_049.9, 10_000, 15_000), (99_500, 10_000, 100_000),
    (9_000, 10_000, 11_000), (10_040, 10_000, 11_000), (0.3, 0, 1), (47, 0, 47),
])
def test_estimates_are_rounded_to_two_figures_and_never_below_what_was_counted(value, above, shown):
    assert about(value, above) == shown
