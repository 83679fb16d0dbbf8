"""The API over real HTTP, served by gunicorn, against real PostgreSQL: every endpoint, every kind of caller."""

from __future__ import annotations

import datetime as dt
import io
import os
import runpy
import tarfile
import time
from pathlib import Path

import pytest
import requests
from gunicorn.config import Config
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from apiserver import ApiServer
from archive_daemon import db, principals
from archive_daemon.config import load_config
from archive_daemon.loader import ingest
from conftest import fresh_database
from fitsmaker import image

RECENT = dt.date.today() - dt.timedelta(days=20)
NIGHT = f"{RECENT:%Y-%m/%d}"
OLD = "2019-05/02"


@pytest.fixture(scope="module")
def archive(cluster, tmp_path_factory):
    """Public and proprietary files, users with tokens, and two servers: one trusting the
    front end's X-Remote-User header from loopback, one trusting nobody."""
    base = tmp_path_factory.mktemp("api")
    root = base / "data"
    obs = f"{RECENT + dt.timedelta(days=1)}T05:00:00"
    image(root / OLD / "cam" / "public1.fits", {"OBJECT": "NGC 3115", "TELESCOP": "Shane", "INSTRUME": "Kast",
                                               "DATE-OBS": "2019-05-03T05:00:00", "PROPID": "P1"})
    image(root / OLD / "cam" / "public2.fits", {"OBJECT": "M31", "RA": "00:42:44.3", "DEC": "41:16:09",
                                               "DATE-OBS": "2019-05-03T06:00:00"})
    image(root / NIGHT / "cam" / "mine.fits", {"OBJECT": "SN 2026abc", "PROPID": "P1", "DATE-OBS": obs})
    image(root / NIGHT / "cam" / "theirs.fits", {"OBJECT": "SN 2026xyz", "PROPID": "P2", "DATE-OBS": obs})
    image(root / OLD / "cam" / "big.fits", {"OBJECT": "flat field", "DATE-OBS": "2019-05-03T07:00:00"},
          shape=(2048, 2048))
    outside = image(base / "outside" / "secret.fits", {"OBJECT": "outside", "DATE-OBS": "2019-05-03T05:00:00"})
    escape = image(root / OLD / "cam" / "escape.fits", {"OBJECT": "outside", "DATE-OBS": "2019-05-03T05:00:00"})
    config_path = base / "config.yaml"
    settings = {"roots": [{"name": "data", "path": str(root)}],
                "api": {"user_header": "X-Remote-User", "max_limit": 50, "tar_max_files": 5}}
    config_path.write_text(yaml.safe_dump(settings))
    untrusting = base / "untrusting.yaml"
    untrusting.write_text(yaml.safe_dump({**settings, "api": {"user_header": "X-Remote-User", "x_sendfile": True,
                                                              "trusted_proxies": ["10.9.9.9"]}}))
    url, drop = fresh_database(cluster)
    config = load_config(str(config_path))
    engine = db.create_engine(url)
    ingest(engine, config, config.root("data"), [""], workers=1)
    escape.unlink()  # archived as a file, then replaced by a link out of the root (links are never archived)
    os.symlink(outside, escape)
    connection = engine.raw_connection()
    principals.add_user(connection, "alice")
    principals.grant(connection, "alice", "P1")
    principals.add_user(connection, "bob")
    tokens = {name: principals.create_token(connection, name) for name in ("alice", "bob")}
    revoked = principals.create_token(connection, "alice")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE api_tokens SET revoked_at = now() WHERE token_hash = %s",
                       (principals.token_hash(revoked),))
    connection.commit()
    with connection.cursor() as cursor:
        cursor.execute("SELECT path, id FROM files")
        ids = dict(cursor.fetchall())
    connection.close()
    server = ApiServer(config_path, url, base / "gunicorn.log")
    other = ApiServer(untrusting, url, base / "gunicorn-untrusting.log")
    yield {"server": server, "other": other, "ids": ids, "tokens": tokens, "revoked": revoked, "root": root}
    server.stop()
    other.stop()
    engine.dispose()
    drop()


CALLERS = {
    "anonymous": lambda a: {},
    "member": lambda a: {"Authorization": f"Bearer {a['tokens']['alice']}"},
    "non-member": lambda a: {"Authorization": f"Bearer {a['tokens']['bob']}"},
    "trusted front end": lambda a: {"X-Remote-User": "alice"},
}
SEES_MINE = {"anonymous": False, "member": True, "non-member": False, "trusted front end": True}


def paths(response) -> set[str]:
    return {r["path"] for r in response.json()["results"]}


@pytest.mark.parametrize("caller", CALLERS)
def test_every_endpoint_shows_a_proprietary_file_only_to_those_who_may_read_it(archive, caller):
    server, headers = archive["server"], CALLERS[caller](archive)
    mine = archive["ids"][f"{NIGHT}/cam/mine.fits"]
    found = paths(server.get("/api/v1/files", headers=headers))
    assert (f"{NIGHT}/cam/mine.fits" in found) is SEES_MINE[caller]
    assert f"{NIGHT}/cam/theirs.fits" not in found
    count = server.get("/api/v1/files", params={"count": "true"}, headers=headers).json()["count"]
    assert count == len(found)
    expected = 200 if SEES_MINE[caller] else 404
    for suffix in ("", "/header", "/header?format=json", "/download"):
        response = server.get(f"/api/v1/files/{mine}{suffix}", headers=headers)
        assert response.status_code == expected, suffix
        if expected == 404:
            assert "mine" not in response.text and "SN 2026" not in response.text


def test_a_file_shared_with_a_member_and_public_is_listed_and_counted_once(archive):
    headers = CALLERS["member"](archive)
    response = archive["server"].get("/api/v1/files", params={"program": "P1"}, headers=headers)
    assert sorted(paths(response)) == [f"{OLD}/cam/public1.fits", f"{NIGHT}/cam/mine.fits"]
    assert response.json()["count"] == 2


def _every_endpoint(server, archive, headers) -> dict[str, int]:
    mine = archive["ids"][f"{NIGHT}/cam/mine.fits"]
    codes = {path: server.get(path, headers=headers).status_code for path in (
        "/api/v1/files", f"/api/v1/files/{mine}", f"/api/v1/files/{mine}/header", f"/api/v1/files/{mine}/download")}
    tar = requests.post(server.base + "/api/v1/download", json={"ids": [mine]}, headers=headers, timeout=30)
    codes["tar"] = tar.status_code
    if tar.status_code == 200:
        codes["tar has it"] = f"data/{NIGHT}/cam/mine.fits" in _tar(tar)
    return codes


def test_revoked_and_malformed_tokens_are_refused_everywhere(archive):
    server = archive["server"]
    codes = _every_endpoint(server, archive, {"Authorization": f"Bearer {archive['revoked']}"})
    assert set(codes.values()) == {401}
    response = server.get("/api/v1/files", headers={"Authorization": "Basic abc"})
    assert response.status_code == 401 and "Bearer" in response.json()["description"]


def test_front_end_user_is_believed_only_from_trusted_addresses(archive):
    trusted = _every_endpoint(archive["server"], archive, {"X-Remote-User": "alice"})
    assert list(trusted.values()) == [200, 200, 200, 200, 200, True]
    untrusted = _every_endpoint(archive["other"], archive, {"X-Remote-User": "alice"})
    assert list(untrusted.values()) == [200, 404, 404, 404, 200, False]
    assert f"{NIGHT}/cam/mine.fits" not in paths(archive["other"].get("/api/v1/files", headers={"X-Remote-User": "alice"}))


def test_x_sendfile_hands_the_download_to_apache(archive):
    file_id = archive["ids"][f"{OLD}/cam/public1.fits"]
    response = archive["other"].get(f"/api/v1/files/{file_id}/download")
    assert response.headers["X-Sendfile"] == str(archive["root"] / OLD / "cam" / "public1.fits")
    assert response.content == b""


@pytest.mark.parametrize("ra, dec, radius", [
    ("00:42:44.3", "41:16:09", "30s"), ("00h42m44.3s", "+41d16m09s", "2m"), ("00 42 44.3", "41 16 09", "0.01d"),
    ("10.6846", "41.2692", "0.01"),
])
def test_cone_search_accepts_degrees_and_sexagesimal(archive, ra, dec, radius):
    response = archive["server"].get("/api/v1/files", params={"ra": ra, "dec": dec, "radius": radius})
    assert response.status_code == 200, response.text
    assert paths(response) == {f"{OLD}/cam/public2.fits"}


def test_filters_time_night_object_and_path(archive):
    server, headers = archive["server"], CALLERS["member"](archive)
    assert paths(server.get("/api/v1/files", params={"object": "m31"})) == {f"{OLD}/cam/public2.fits"}
    assert paths(server.get("/api/v1/files", params={"object": "sn 2026", "object_match": "prefix"},
                            headers=headers)) == {f"{NIGHT}/cam/mine.fits"}
    assert paths(server.get("/api/v1/files", params={"object": "3115", "object_match": "contains"})) == \
        {f"{OLD}/cam/public1.fits"}
    assert len(paths(server.get("/api/v1/files", params={"night": "2019-05-02"}))) == 4
    assert paths(server.get("/api/v1/files", params={"start": "2019-05-03T05:30:00+00:00",
                                                     "end": "2019-05-03T07:00:00Z"})) == {f"{OLD}/cam/public2.fits"}
    assert len(paths(server.get("/api/v1/files", params={"path": OLD}))) == 4


def test_keyset_pagination_walks_every_row_once(archive):
    server, headers = archive["server"], CALLERS["member"](archive)
    seen, url = [], "/api/v1/files?limit=1&sort=-obs_start"
    while url:
        page = server.get(url.replace(server.base, ""), headers=headers).json()
        seen += [r["path"] for r in page["results"]]
        url = page["next"]
    assert len(seen) == len(set(seen)) == 5


def test_csv_and_votable(archive):
    server = archive["server"]
    csv_text = server.get("/api/v1/files", params={"format": "csv", "fields": "path,object"}).text
    assert csv_text.splitlines()[0] == "id,path,object" and "NGC 3115" in csv_text
    response = server.get("/api/v1/files", headers={"Accept": "application/x-votable+xml"})
    assert response.headers["Content-Type"].startswith("application/x-votable+xml")
    from astropy.io.votable import parse_single_table
    table = parse_single_table(io.BytesIO(response.content)).to_table()
    assert set(table["path"]) == {f"{OLD}/cam/{n}.fits" for n in ("public1", "public2", "big", "escape")}


@pytest.mark.parametrize("query, name", [
    ("bogus=1", "bogus"), ("radius=30x&ra=1&dec=1", "radius"), ("ra=25h00m00s&dec=0&radius=1", "ra"),
    ("ra=1&dec=1", "radius"), ("radius=20&ra=1&dec=1", "radius"), ("limit=0", "limit"), ("limit=51", "limit"),
    ("start=yesterday", "start"), ("sort=header", "sort"), ("fields=grants", "fields"), ("cursor=xyz", "cursor"),
    ("format=xml", "format"), ("object=", "object"), ("night=2024-13-01", "night"), ("limit=1&limit=2", "limit"),
])
def test_bad_parameters_are_a_400_naming_them(archive, query, name):
    response = archive["server"].get(f"/api/v1/files?{query}")
    assert response.status_code == 400
    assert response.json()["description"].startswith(f"{name}:")


def test_header_as_text_and_json(archive):
    server, file_id = archive["server"], archive["ids"][f"{OLD}/cam/public1.fits"]
    text = server.get(f"/api/v1/files/{file_id}/header").text
    assert all(len(line) == 80 for line in text.splitlines()) and text.startswith("SIMPLE  =")
    cards = server.get(f"/api/v1/files/{file_id}/header", params={"format": "json"}).json()["cards"]
    assert {"keyword": "OBJECT", "value": "NGC 3115", "comment": None} in cards


def test_download_with_range_etag_and_filename(archive):
    server, file_id = archive["server"], archive["ids"][f"{OLD}/cam/public1.fits"]
    whole = server.get(f"/api/v1/files/{file_id}/download")
    on_disk = (archive["root"] / OLD / "cam" / "public1.fits").read_bytes()
    assert whole.content == on_disk
    assert 'filename="public1.fits"' in whole.headers["Content-Disposition"]
    assert whole.headers["Last-Modified"]
    part = server.get(f"/api/v1/files/{file_id}/download", headers={"Range": "bytes=80-159"})
    assert part.status_code == 206 and part.content == on_disk[80:160]
    assert part.headers["Content-Range"] == f"bytes 80-159/{len(on_disk)}"
    tail = server.get(f"/api/v1/files/{file_id}/download", headers={"Range": "bytes=-100"})
    assert tail.content == on_disk[-100:]
    assert server.get(f"/api/v1/files/{file_id}/download", headers={"Range": "bytes=999999-"}).status_code == 416
    cached = server.get(f"/api/v1/files/{file_id}/download", headers={"If-None-Match": whole.headers["ETag"]})
    assert cached.status_code == 304


@pytest.mark.parametrize("path", ["/api/v1/files/999999", "/api/v1/files/abc", "/api/v1/files/..%2F..%2Fetc%2Fpasswd",
                                  "/api/v1/files/1%2F..%2F2/download", "/api/v1/nothing"])
def test_unknown_ids_and_path_tricks_are_404(archive, path):
    assert archive["server"].get(path).status_code == 404


def test_a_symlink_leading_out_of_the_root_is_never_served(archive):
    server = archive["server"]
    file_id = archive["ids"][f"{OLD}/cam/escape.fits"]  # archived before it became a link
    assert server.get(f"/api/v1/files/{file_id}/download").status_code == 404
    tar = requests.post(server.base + "/api/v1/download", json={"ids": [file_id]}, timeout=30)
    assert "NOT AVAILABLE data/2019-05/02/cam/escape.fits" in _tar(tar)["MANIFEST.txt"].decode()


def test_health(archive):
    health = archive["server"].get("/api/v1/health")
    assert health.status_code == 200
    assert health.json()["database"] == "ok" and health.json()["schema"] == "current"


def test_a_slow_client_downloading_is_not_cut_off(archive):
    """The test server's worker timeout is 3 s; a client reading 8 MB at 640 kB/s takes
    over 10 s. Sync workers would be killed mid-transfer; threaded ones are not."""
    server, file_id = archive["server"], archive["ids"][f"{OLD}/cam/big.fits"]
    size = (archive["root"] / OLD / "cam" / "big.fits").stat().st_size
    received, started = 0, time.monotonic()
    with requests.get(f"{server.base}/api/v1/files/{file_id}/download", stream=True, timeout=60) as response:
        for chunk in response.iter_content(64 * 1024):
            received += len(chunk)
            time.sleep(0.1)
    assert time.monotonic() - started > 6
    assert received == size


def _tar(response) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:*") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


@pytest.mark.parametrize("gzip", [False, True])
def test_tar_download_streams_what_the_caller_may_read_and_lists_the_rest(archive, gzip):
    ids = archive["ids"]
    body = {"ids": [ids[f"{OLD}/cam/public1.fits"], ids[f"{NIGHT}/cam/mine.fits"], 999999],
            "paths": [f"data/{OLD}/cam/public2.fits", "data/nope.fits"], "gzip": gzip}
    response = requests.post(archive["server"].base + "/api/v1/download", json=body, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == ("application/gzip" if gzip else "application/x-tar")
    members = _tar(response)
    assert members[f"data/{OLD}/cam/public1.fits"] == (archive["root"] / OLD / "cam" / "public1.fits").read_bytes()
    assert f"data/{OLD}/cam/public2.fits" in members
    manifest = members["MANIFEST.txt"].decode()
    assert f"NOT AVAILABLE id {ids[f'{NIGHT}/cam/mine.fits']}" in manifest and "NOT AVAILABLE id 999999" in manifest
    assert "NOT AVAILABLE data/nope.fits" in manifest
    assert not any("mine" in name for name in members)


def test_tar_download_for_a_member_by_form_post(archive):
    ids = archive["ids"]
    response = requests.post(archive["server"].base + "/api/v1/download", headers=CALLERS["member"](archive),
                             data={"ids": [ids[f"{NIGHT}/cam/mine.fits"]]}, timeout=30)
    assert f"data/{NIGHT}/cam/mine.fits" in _tar(response)


@pytest.mark.parametrize("body, name", [
    ({"ids": [1, 2, 3, 4, 5, 6]}, "ids"), ({"ids": ["x"]}, "ids"), ({}, "ids"), ({"paths": ["nope"]}, "paths"),
    ({"ids": [1], "zip": True}, "zip"), ({"ids": [1], "gzip": "yes"}, "gzip"),
])
def test_tar_download_bad_requests(archive, body, name):
    response = requests.post(archive["server"].base + "/api/v1/download", json=body, timeout=30)
    assert response.status_code == 400 and response.json()["description"].startswith(f"{name}:")


def test_no_input_makes_the_api_fail(archive):
    """Cases generated from the OpenAPI document, for every operation: never a 500."""
    schema = schemathesis.openapi.from_url(archive["server"].base + "/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def no_server_error(case):
            case.call_and_validate(checks=[not_a_server_error])
        no_server_error()


def test_gunicorn_settings_keep_sendfile_and_threaded_workers():
    """gunicorn takes any value of `sendfile` in a config file as --no-sendfile."""
    namespace = runpy.run_path(str(Path(__file__).parent.parent / "api" / "gunicorn.conf.py"))
    config = Config()
    for name, value in namespace.items():
        if name in config.settings:
            config.set(name, value)
    assert config.sendfile is True
    assert config.worker_class_str == "gthread" and config.threads > 1
