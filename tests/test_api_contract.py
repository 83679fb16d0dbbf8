"""The API's error contract, in process (falcon.testing) against real PostgreSQL and real
files: whatever a caller sends is answered 2xx/3xx or 400/404/413/416/429/503 with a
description naming the parameter or header, never 500; every header we send is one an
HTTP server can send. Cheap enough to run the generated cases on every change."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import re
import shutil
import tarfile
import xml.etree.ElementTree as ElementTree

import falcon
import falcon.testing
import psycopg2
import pytest
import schemathesis
from astropy.io import fits
from astropy.io.votable import parse_single_table
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from api.app import create_app
from api.openapi import document
from apiserver import NIGHT, OLD, build_archive
from archive_daemon import db
from archive_daemon.config import ApiConfig
from archive_daemon.fitsfile import card_fields
from fitsmaker import image

ODD_NAMES = {"control": 'bell\x07 "quoted"\x01.fits', "unicode": "snow\u2603-\u00e9t\u00e9.fits"}
# What gunicorn (and HTTP) accepts in a header value.
HEADER_VALUE = re.compile(r"[ \t\x21-\x7e\x80-\xff]*")


def _odd_files(root):
    for name in ODD_NAMES.values():
        image(root / OLD / "odd" / name, {"OBJECT": "odd", "DATE-OBS": "2019-05-03T08:00:00"})
    # Public now; after the ingest each becomes a way to reach something else.
    image(root / OLD / "tricks" / "linked.fits", {"OBJECT": "trick", "DATE-OBS": "2019-05-03T08:00:00"})
    image(root / OLD / "linkdir" / "mine.fits", {"OBJECT": "trick", "DATE-OBS": "2019-05-03T08:00:00"})
    image(root / OLD / "tricks" / "fifo.fits", {"OBJECT": "trick", "DATE-OBS": "2019-05-03T08:00:00"})


@pytest.fixture(scope="module")
def archive(cluster, tmp_path_factory):
    built = build_archive(cluster, tmp_path_factory.mktemp("contract"), extra=_odd_files,
                          api={"max_body_bytes": 2048, "max_streams": 3, "max_streams_per_client": 2})
    root = built["root"]
    # A symlink in a public directory to a proprietary file; a public directory replaced
    # by a link to a proprietary one; a FIFO where a file was.
    (root / OLD / "tricks" / "linked.fits").unlink()
    os.symlink(root / NIGHT / "cam" / "mine.fits", root / OLD / "tricks" / "linked.fits")
    shutil.rmtree(root / OLD / "linkdir")
    os.symlink(root / NIGHT / "cam", root / OLD / "linkdir")
    (root / OLD / "tricks" / "fifo.fits").unlink()
    os.mkfifo(root / OLD / "tricks" / "fifo.fits")
    built["client"] = client_for(built["config"], built["engine"])
    yield built
    built["close"]()


def client_for(config, engine, **api) -> falcon.testing.TestClient:
    if api:
        config = dataclasses.replace(config, api=dataclasses.replace(config.api, **api))
    return falcon.testing.TestClient(create_app(config, engine))


def member(archive) -> dict:
    return {"Authorization": f"Bearer {archive['tokens']['alice']}"}


def assert_names(response, status: int, name: str) -> None:
    assert response.status_code == status, (response.status, response.text)
    assert response.json["description"].startswith(f"{name}:"), response.json


def assert_sendable(response) -> None:
    for name, value in response.headers.items():
        assert HEADER_VALUE.fullmatch(value), (name, value)
        value.encode("latin-1")


def search(archive, **params):
    return archive["client"].simulate_get("/api/v1/files", params=params)


def paths(response) -> set[str]:
    return {r["path"] for r in response.json["results"]}


# -- time zones -------------------------------------------------------------------------

def test_offsets_python_accepts_but_postgresql_does_not_are_converted_to_utc(archive):
    # 05:30Z to 07:00Z: after public1 (05:00), public2 (06:00), not big (07:00, the end is exclusive).
    response = search(archive, start="2019-05-04T04:30:00+23:00", end="2019-05-04T06:59:00+23:59")
    assert response.status_code == 200, response.text
    assert paths(response) == {f"{OLD}/cam/public2.fits"}


def test_a_time_that_leaves_the_calendar_in_utc_is_a_400(archive):
    assert_names(search(archive, end="0001-01-01T00:00:00+15:00"), 400, "end")


# -- cursors ----------------------------------------------------------------------------

def _cursor(response) -> str:
    return re.search(r"cursor=([^&]+)", response.json["next"]).group(1)


@pytest.mark.parametrize("other", ["obs_start", "-path", "id", "object"])
def test_a_cursor_is_refused_under_another_sort(archive, other):
    token = _cursor(search(archive, sort="path", limit="1"))
    response = search(archive, sort=other, limit="1", cursor=token)
    assert_names(response, 400, "cursor")
    assert "sort=path" in response.json["description"]


def test_a_cursor_walks_its_own_sort(archive):
    seen, params = [], {"sort": "-night", "limit": "2"}
    while True:
        page = search(archive, **params)
        assert page.status_code == 200, page.text
        seen += [r["path"] for r in page.json["results"]]
        if not page.json["next"]:
            break
        params["cursor"] = _cursor(page)
    assert len(seen) == len(set(seen)) == page.json["count"]


def _token(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize("sort, crafted", [
    ("obs_start", ["obs_start", "not a time", 1]), ("obs_start", ["obs_start", "2019-05-03T05:00:00", 1]),
    ("obs_start", ["obs_start", 5, 1]), ("night", ["night", "2019-13-01", 1]), ("night", ["night", 7, 1]),
    ("public_date", ["public_date", [], 1]), ("id", ["id", "x", 1]), ("id", ["id", 2**70, 1]),
    ("path", ["path", 5, 1]), ("path", ["path", "a\x00b", 1]), ("object", ["object", {"a": 1}, 1]),
    ("path", ["path", "a", True]), ("path", ["path", "a", 2**64]), ("path", ["path", "a", -1]),
    ("path", ["path", "a"]), ("path", {"sort": "path"}), ("path", ["path\x00", "a", 1]),
    # Shaped like the cursors of old, which carried no sort and reached SQL untyped.
    ("obs_start", ["not a time", 1]), ("night", [[1], 1]), ("path", ["a\x00b", 1]), ("id", [2**70, 1]),
])
def test_a_crafted_cursor_is_a_400_not_a_database_error(archive, sort, crafted):
    assert_names(search(archive, sort=sort, cursor=_token(crafted)), 400, "cursor")


@pytest.mark.parametrize("token", ["[" * 5000, base64.urlsafe_b64encode(b"[" * 5000).decode(), "\u00e9t\u00e9",
                                   base64.urlsafe_b64encode(b"\xff\xfe").decode(), "abc\x00"])
def test_a_cursor_that_is_not_one_is_a_400(archive, token):
    assert_names(search(archive, cursor=token), 400, "cursor")


# -- control characters and NUL in parameters ------------------------------------------

SEARCH_PARAMETERS = [p["name"] for p in document(ApiConfig())["paths"]["/api/v1/files"]["get"]["parameters"]]


@pytest.mark.parametrize("name", SEARCH_PARAMETERS)
@pytest.mark.parametrize("value", ["a\x00b", "\x00", "1\x01"])
def test_a_control_character_in_any_search_parameter_is_a_400_naming_it(archive, name, value):
    assert_names(search(archive, **{name: value}), 400, name)


def test_a_control_character_in_the_header_format_is_a_400(archive):
    file_id = archive["ids"][f"{OLD}/cam/public1.fits"]
    response = archive["client"].simulate_get(f"/api/v1/files/{file_id}/header", params={"format": "json\x00"})
    assert_names(response, 400, "format")


# -- ids --------------------------------------------------------------------------------

@pytest.mark.parametrize("file_id", ["%C2%B2", "%D9%A3", "1%00", "99999999999999999999", "0", "-1", "+1"])
@pytest.mark.parametrize("suffix", ["", "/header", "/download"])
def test_an_id_that_is_not_ascii_digits_in_range_is_a_404(archive, file_id, suffix):
    response = archive["client"].simulate_get(f"/api/v1/files/{file_id}{suffix}")
    assert response.status_code == 404, response.text


def tar(archive, request=None, client=None, **kwargs):
    """POST /api/v1/download: `request` as JSON, or any simulate_post arguments."""
    if request is not None:
        kwargs["json"] = request
    return (client or archive["client"]).simulate_post("/api/v1/download", **kwargs)


@pytest.mark.parametrize("body, name", [
    ({"ids": ["\u00b2"]}, "ids"), ({"ids": [True]}, "ids"), ({"ids": [2**64]}, "ids"), ({"ids": [-1]}, "ids"),
    ({"ids": [1.5]}, "ids"), ({"ids": "1"}, "ids"), ({"paths": ["data/a\x00b.fits"]}, "paths"),
    ({"paths": ["data/a\nb.fits"]}, "paths"), ({"ids": [1], "gz\x00ip": True}, "'gz\\x00ip'"),
])
def test_tar_body_mistakes_are_a_400_naming_the_field(archive, body, name):
    assert_names(tar(archive, body), 400, name)


@pytest.mark.parametrize("form, name", [("ids=%C2%B2", "ids"), ("ids=1%00", "ids"), ("paths=data%2Fa%00b", "paths"),
                                        ("ids=%FF", "ids"), (b"ids=\xff", "body")])
def test_tar_form_mistakes_are_a_400_naming_the_field(archive, form, name):
    assert_names(tar(archive, body=form, headers={"Content-Type": "application/x-www-form-urlencoded"}), 400, name)


@pytest.mark.parametrize("body, name", [('{"paths": ["data/\\ud800.fits"]}', "paths"),
                                        ('{"ids": [1], "\\udfff": 1}', "'\\udfff'")])
def test_unpaired_surrogates_in_json_are_a_400(archive, body, name):
    assert_names(tar(archive, body=body, headers={"Content-Type": "application/json"}), 400, name)


def test_an_unpaired_surrogate_in_a_cursor_is_a_400(archive):
    token = base64.urlsafe_b64encode(b'["path", "\\ud800", 1]').decode()
    assert_names(search(archive, sort="path", cursor=token), 400, "cursor")


def test_deeply_nested_json_is_a_400(archive):
    assert_names(tar(archive, body="[" * 1020 + "]" * 1020,
                     headers={"Content-Type": "application/json"}), 400, "body")
    assert_names(tar(archive, body=b'{"ids": [1], "x": "\xff"}',
                     headers={"Content-Type": "application/json"}), 400, "body")


def test_a_body_over_the_cap_is_a_413_before_it_is_parsed(archive):
    at_cap = json.dumps({"ids": [1], "paths": ["data/"]})
    at_cap = at_cap.replace("data/", "data/" + "x" * (2048 - len(at_cap)))
    assert len(at_cap) == 2048
    assert tar(archive, body=at_cap, headers={"Content-Type": "application/json"}).status_code == 200
    assert_names(tar(archive, body=at_cap + " ", headers={"Content-Type": "application/json"}),
                 413, "body")
    assert_names(tar(archive, body="ids=1&" + "x" * 3000,
                     headers={"Content-Type": "application/x-www-form-urlencoded"}), 413, "body")


def test_a_body_announced_over_the_cap_is_refused_unread(archive):
    response = archive["client"].simulate_post("/api/v1/download", body=b'{"ids": [1]}',
                                               headers={"Content-Type": "application/json", "Content-Length": "4096"})
    assert_names(response, 413, "body")


# -- ranges and conditional requests ---------------------------------------------------

@pytest.fixture(scope="module")
def public1(archive):
    file_id = archive["ids"][f"{OLD}/cam/public1.fits"]
    data = (archive["root"] / OLD / "cam" / "public1.fits").read_bytes()
    return f"/api/v1/files/{file_id}/download", data


def download(archive, url, **headers):
    return archive["client"].simulate_get(url, headers=headers)


@pytest.mark.parametrize("header", ["bytes=-0", "bytes=" + "9" * 5000 + "-", "bytes=2880-1", "bytes=0-1,5-6",
                                    "bytes=a-b", "bytes=-", "bytes=00000000000000000000000000099999999-"])
def test_ranges_that_cannot_be_satisfied_are_a_416_naming_the_header(archive, public1, header):
    url, data = public1
    response = download(archive, url, Range=header)
    assert_names(response, 416, "Range")
    assert response.headers["Content-Range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize("header, start, end", [
    ("bytes=-" + "9" * 5000, 0, None), ("bytes=0-" + "9" * 5000, 0, None), ("bytes=-1", -1, None),
    ("bytes=0-0", 0, 1), ("bytes=000080-159", 80, 160), ("BYTES=10-", 10, None),
])
def test_ranges_with_any_number_of_digits_are_served(archive, public1, header, start, end):
    url, data = public1
    response = download(archive, url, Range=header)
    assert response.status_code == 206, response.text
    part = data[start:end]
    assert response.content == part
    first = len(data) + start if start < 0 else start
    assert response.headers["Content-Range"] == f"bytes {first}-{first + len(part) - 1}/{len(data)}"


def test_a_range_of_another_unit_is_ignored(archive, public1):
    url, data = public1
    response = download(archive, url, Range="items=0-5")
    assert response.status_code == 200 and response.content == data


def test_if_range_sends_the_range_only_for_the_same_file(archive, public1):
    url, data = public1
    whole = download(archive, url)
    etag, modified = whole.headers["ETag"], whole.headers["Last-Modified"]
    assert download(archive, url, Range="bytes=0-9", **{"If-Range": etag}).status_code == 206
    assert download(archive, url, Range="bytes=0-9", **{"If-Range": modified}).status_code == 206
    for stale in ('"0-0"', "W/" + etag, "Tue, 01 Jan 1980 00:00:00 GMT"):
        response = download(archive, url, Range="bytes=0-9", **{"If-Range": stale})
        assert response.status_code == 200 and response.content == data


def test_if_none_match_takes_lists_weak_tags_and_star(archive, public1):
    url, _ = public1
    etag = download(archive, url).headers["ETag"]
    for header in (etag, f'"x", {etag}', f"W/{etag}", "*"):
        assert download(archive, url, **{"If-None-Match": header}).status_code == 304, header
    assert download(archive, url, **{"If-None-Match": '"other"'}).status_code == 200


# -- odd file names ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ODD_NAMES)
def test_a_download_of_an_odd_file_name_sends_valid_headers(archive, kind):
    name = ODD_NAMES[kind]
    file_id = archive["ids"][f"{OLD}/odd/{name}"]
    response = archive["client"].simulate_get(f"/api/v1/files/{file_id}/download")
    assert response.status_code == 200
    assert_sendable(response)
    assert response.content == (archive["root"] / OLD / "odd" / name).read_bytes()
    disposition = response.headers["Content-Disposition"]
    assert "filename*=UTF-8''" in disposition
    from urllib.parse import unquote
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == name


def test_x_sendfile_carries_the_path_bytes_or_the_api_sends_the_file_itself(archive):
    client = client_for(archive["config"], archive["engine"], x_sendfile=True)
    unicode_id = archive["ids"][f"{OLD}/odd/{ODD_NAMES['unicode']}"]
    response = client.simulate_get(f"/api/v1/files/{unicode_id}/download")
    assert_sendable(response)
    on_disk = os.fsencode(os.path.realpath(archive["root"] / OLD / "odd" / ODD_NAMES["unicode"]))
    assert response.headers["X-Sendfile"].encode("latin-1") == on_disk and response.content == b""
    control_id = archive["ids"][f"{OLD}/odd/{ODD_NAMES['control']}"]
    response = client.simulate_get(f"/api/v1/files/{control_id}/download")
    assert_sendable(response)
    assert "X-Sendfile" not in response.headers
    assert response.content == (archive["root"] / OLD / "odd" / ODD_NAMES["control"]).read_bytes()


def test_votable_output_is_well_formed_xml_whatever_the_values(archive):
    response = search(archive, path=f"{OLD}/odd", format="votable")
    assert response.status_code == 200
    ElementTree.fromstring(response.content)
    table = parse_single_table(io.BytesIO(response.content)).to_table()
    assert f"{OLD}/odd/bell\ufffd \"quoted\"\ufffd.fits" in set(table["path"])


@pytest.mark.parametrize("fmt", ["votable", "csv", "json"])
def test_a_field_named_twice_is_shown_once(archive, fmt):
    response = search(archive, fields="id,path,id,path", format=fmt)
    assert response.status_code == 200, response.text
    if fmt == "votable":
        assert list(parse_single_table(io.BytesIO(response.content)).to_table().colnames) == ["id", "path"]
    elif fmt == "csv":
        assert response.text.splitlines()[0] == "id,path"
    else:
        assert list(response.json["results"][0]) == ["id", "path"]


# -- symlinks and FIFOs ------------------------------------------------------------------

@pytest.mark.parametrize("path", [f"{OLD}/tricks/linked.fits", f"{OLD}/linkdir/mine.fits", f"{OLD}/tricks/fifo.fits"])
def test_links_and_fifos_are_never_served(archive, path):
    file_id = archive["ids"][path]
    response = archive["client"].simulate_get(f"/api/v1/files/{file_id}/download")
    assert response.status_code == 404
    assert b"SN 2026abc" not in response.content
    client = client_for(archive["config"], archive["engine"], x_sendfile=True)
    assert client.simulate_get(f"/api/v1/files/{file_id}/download").status_code == 404
    members = tar_members(tar(archive, {"ids": [file_id]}))
    assert list(members) == ["MANIFEST.txt"]
    assert f"NOT AVAILABLE data/{path}:" in members["MANIFEST.txt"].decode()


def tar_members(response) -> dict[str, bytes]:
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:*") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers()}


def test_the_manifest_keeps_one_line_per_file(archive):
    members = tar_members(tar(archive, {"ids": [archive["ids"][f"{OLD}/odd/{ODD_NAMES['control']}"]]}))
    lines = members["MANIFEST.txt"].decode().splitlines()
    assert lines == [f"SENT data/{OLD}/odd/bell\\x07 \"quoted\"\\x01.fits "
                     f"{len((archive['root'] / OLD / 'odd' / ODD_NAMES['control']).read_bytes())}"]


# -- limits whose exact boundaries matter ------------------------------------------------

@pytest.mark.parametrize("params, expected", [
    ({"exptime_min": "120"}, {"public2"}), ({"exptime_min": "120.0001"}, set()),
    ({"exptime_min": "30", "exptime_max": "30"}, {"public1", "big", "escape"}), ({"exptime_max": "29.9999"}, set()),
    ({"exptime_min": "30.0001", "exptime_max": "120"}, {"public2"}),
])
def test_exposure_bounds_are_inclusive(archive, params, expected):
    found = {p.rsplit("/", 1)[1][:-5] for p in paths(search(archive, path=f"{OLD}/cam", **params))}
    assert found == expected


@pytest.mark.parametrize("fmt", ["csv", "votable"])
def test_csv_and_votable_carry_the_whole_count(archive, fmt):
    count = search(archive, count="true").json["count"]
    response = search(archive, format=fmt, limit="1")
    assert response.headers["X-Total-Count"] == str(count) and count > 1
    assert re.search(r'; rel="?next', response.headers["Link"])


@pytest.mark.parametrize("host", ['a>b"c', "a b", "[::1"])
def test_a_host_that_would_break_the_next_link_is_a_400(archive, host):
    response = archive["client"].simulate_get("/api/v1/files", params={"limit": "1", "format": "csv"},
                                              headers={"Host": host})
    assert_names(response, 400, "Host")


@pytest.mark.parametrize("host", ["archive.example.org", "archive.example.org:8443", "[::1]:8000", "127.0.0.1"])
def test_the_next_link_is_built_from_the_host(archive, host):
    response = archive["client"].simulate_get("/api/v1/files", params={"limit": "1"}, headers={"Host": host})
    assert response.json["next"].startswith(f"http://{host}/api/v1/files?")


def test_json_carries_its_count_in_the_body(archive):
    response = search(archive, limit="1")
    assert "X-Total-Count" not in response.headers and response.json["count"] > 1


def test_the_tar_byte_cap_is_inclusive(archive):
    ids = [archive["ids"][f"{OLD}/cam/public1.fits"], archive["ids"][f"{OLD}/cam/public2.fits"]]
    total = sum((archive["root"] / OLD / "cam" / n).stat().st_size for n in ("public1.fits", "public2.fits"))
    at_cap = client_for(archive["config"], archive["engine"], tar_max_bytes=total)
    assert tar(archive, {"ids": ids}, client=at_cap).status_code == 200
    below = client_for(archive["config"], archive["engine"], tar_max_bytes=total - 1)
    response = tar(archive, {"ids": ids}, client=below)
    assert_names(response, 400, "ids")
    assert f"{total} bytes, over the {total - 1}" in response.json["description"]


def test_the_tar_file_cap_is_inclusive(archive):
    five = [archive["ids"][p] for p in sorted(archive["ids"])[:5]]
    assert tar(archive, {"ids": five}).status_code == 200
    assert_names(tar(archive, {"ids": five, "paths": ["data/x.fits"]}), 400, "ids")


# -- streams -----------------------------------------------------------------------------

def _start(app, path: str, body: bytes = b"", address: str = "10.0.0.1", headers=None):
    """A download begun and not read: the WSGI body iterable, still open."""
    environ = falcon.testing.create_environ(path, method="POST" if body else "GET", body=body,
                                            headers=headers, remote_addr=address)
    status = []
    body_iterable = app(environ, lambda s, h, exc_info=None: status.append(s))
    return status[0], body_iterable


def test_downloads_at_once_are_capped_per_client_and_per_worker(archive):
    app = create_app(archive["config"], archive["engine"])
    single = f"/api/v1/files/{archive['ids'][f'{OLD}/cam/public1.fits']}/download"
    tar_body = json.dumps({"ids": [archive["ids"][f"{OLD}/cam/big.fits"]]}).encode()
    json_headers = {"Content-Type": "application/json"}
    first = _start(app, single)
    second = _start(app, "/api/v1/download", tar_body, headers=json_headers)
    assert first[0].startswith("200") and second[0].startswith("200")
    third, body = _start(app, single)
    assert third.startswith("429") and b"downloads:" in b"".join(body)
    other = _start(app, single, address="10.0.0.2")
    assert other[0].startswith("200")
    full, body = _start(app, single, address="10.0.0.3")  # max_streams: 3
    assert full.startswith("503") and b"downloads:" in b"".join(body)
    first[1].close()
    again = _start(app, single)
    assert again[0].startswith("200")
    for started in (second, other, again):
        started[1].close()
    last = _start(app, "/api/v1/download", tar_body, headers=json_headers, address="10.0.0.3")
    assert last[0].startswith("200")
    last[1].close()


def test_a_signed_in_user_is_one_client_wherever_they_connect_from(archive):
    app = create_app(archive["config"], archive["engine"])
    single = f"/api/v1/files/{archive['ids'][f'{OLD}/cam/public1.fits']}/download"
    started = [_start(app, single, address=address, headers=member(archive)) for address in ("10.0.1.1", "10.0.1.2")]
    assert all(status.startswith("200") for status, _ in started)
    third, _ = _start(app, single, address="10.0.1.3", headers=member(archive))
    assert third.startswith("429")
    for _, body in started:
        body.close()


# -- header as JSON ----------------------------------------------------------------------

def test_header_cards_as_json_read_like_astropy_reads_them(archive):
    file_id = archive["ids"][f"{OLD}/cam/public2.fits"]
    cards = archive["client"].simulate_get(f"/api/v1/files/{file_id}/header", params={"format": "json"}).json["cards"]
    header = fits.getheader(archive["root"] / OLD / "cam" / "public2.fits")
    assert [(c["keyword"], c["value"], c["comment"]) for c in cards] == \
        [(card.keyword, card.value, card.comment or None) for card in header.cards] + [("END", "", None)]


@pytest.mark.parametrize("image", [
    "COMMENT   a comment", "HISTORY x", "        blank keyword", "EXPTIME =                 30.5 / exposure time",
    "S       = 'it''s '   /  spaced", "N       = -12 /", "D       = 1.5D3", "L       =                    F",
    "HIERARCH ESO DET CHIP = 5 / chip", "C       = (1.0, 2.0)", "U       =   / undefined", "CONTINUE  'more'",
])
def test_the_fast_card_reader_agrees_with_astropy(image):
    image = image.ljust(80)
    card = fits.Card.fromstring(image)
    value = None if isinstance(card.value, fits.card.Undefined) else card.value
    assert card_fields(image) == (card.keyword, value, card.comment or None)


# -- health, and cases generated from the OpenAPI document ---------------------------------

def test_health_reads_the_migrations_once(archive):
    client = archive["client"]
    client.simulate_get("/api/v1/health")
    before = db.head_revision.cache_info().misses
    for _ in range(5):
        response = client.simulate_get("/api/v1/health")
        assert response.status_code == 200 and response.json["schema"] == "current"
    assert db.head_revision.cache_info().misses == before


def test_health_reports_a_schema_behind_the_code(archive):
    with archive["engine"].begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'older'")
    try:
        response = archive["client"].simulate_get("/api/v1/health")
    finally:
        with archive["engine"].begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = %s", (db.head_revision(),))
    assert response.status_code == 503 and "revision older" in response.json["schema"]


def test_connections_go_back_to_the_pool_outside_any_transaction(archive):
    for params in ({}, {"limit": "1"}, {"limit": "x"}):
        search(archive, **params)
    connection = psycopg2.connect(archive["url"])
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()")
        assert cursor.fetchone()[0] == 0
    connection.close()


def test_no_generated_request_makes_the_api_fail(archive):
    """Cases generated from the OpenAPI document for every operation, the same cases on
    every run (derandomized): never a 500, never a header value a server cannot send."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", create_app(archive["config"], archive["engine"]))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def no_server_error(case):
            response = case.call_and_validate(checks=[not_a_server_error])
            for name, values in response.headers.items():
                for value in values if isinstance(values, list) else [values]:
                    assert HEADER_VALUE.fullmatch(value), (name, value)
        no_server_error()
