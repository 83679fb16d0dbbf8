"""The API over a real primary and a real streaming replica (two local clusters).

Reads come from the replica while it holds everything the primary committed
`database.max_replica_lag` seconds ago, from the primary when it lags further or is down,
and from the replica again once it is back: so a grant removed or a token revoked on the
primary stops counting within that bound, and never later. Most tests drive the API's
clock by hand, so that "within the bound" and "past it" are exact; one runs gunicorn in
real time.
"""

from __future__ import annotations

import socket
import time

import falcon.testing
import psycopg2
import pytest
import requests
import yaml

from api.app import create_app
from api.replica import MAX_RETRY, Replica
from apiserver import NIGHT, OLD, ApiServer, build_archive
from archive_daemon import db, principals
from archive_daemon.config import ConfigError, load_config
from conftest import _private_cluster
from daemonproc import wait_until
from standby import Standby

LAG = 2.0  # database.max_replica_lag here
MINE = f"{NIGHT}/cam/mine.fits"  # granted to program P1, of which alice is a member
PUBLIC = f"{OLD}/cam/public2.fits"


@pytest.fixture(scope="module")
def standby():
    """A primary and its streaming replica, for the module."""
    for primary in _private_cluster():
        replica = Standby(primary.dir.parent / "standby", primary)
        replica.start()
        yield replica
        replica.stop()


class Clock:
    """The API's monotonic clock, moved by the test."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def archive(standby, tmp_path):
    """The API test archive on the primary, an application reading from the replica, and its clock."""
    built = build_archive(standby.primary.url(), tmp_path)
    standby.caught_up()
    clock = Clock()
    replica = Replica(db.create_engine(standby.of(built["url"])), built["engine"], LAG, clock)
    client = falcon.testing.TestClient(create_app(built["config"], built["engine"], replica))
    yield {**built, "clock": clock, "replica": replica, "client": client}
    replica.engine.dispose()
    built["close"]()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def search(client, **kwargs):
    """The paths a search for alice's file finds, and where it read them from."""
    response = client.simulate_get("/api/v1/files", params={"object": "SN 2026abc"}, **kwargs)
    assert response.status_code == 200, response.text
    return {r["path"] for r in response.json["results"]}, response.headers["X-Archive-Read-From"]


def health(archive) -> dict:
    response = archive["client"].simulate_get("/api/v1/health")
    assert response.status_code == 200, response.text
    return response.json


def current(archive) -> None:
    """Move the clock a check at a time until a check made now finds the replica has
    replayed all the primary had written: from here, the bound runs from the clock's now."""
    def now_fresh():
        archive["clock"].advance(archive["replica"].interval)
        return health(archive)["replica"] == {"state": "in use", "lag_s": 0.0}
    wait_until(now_fresh, timeout=10, interval=0.05, what="the replica to catch up")


def on_primary(archive, statement: str, *args) -> None:
    """A change committed on the primary (asynchronously: the test clusters turn
    synchronous_commit off, and the bound holds all the same)."""
    connection = psycopg2.connect(archive["url"])
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, args)
        connection.commit()
    finally:
        connection.close()


REMOVE_GRANT = "UPDATE files SET grants = array_remove(grants, 'P1') WHERE path = %s"


def test_reads_come_from_a_replica_that_keeps_up(archive, standby):
    current(archive)
    found, read_from = search(archive["client"], headers=bearer(archive["tokens"]["alice"]))
    assert (found, read_from) == ({MINE}, "replica")
    report = health(archive)
    assert report["status"] == "ok" and report["reads_from"] == "replica"
    assert report["replica"]["state"] == "in use" and report["replica"]["lag_s"] <= LAG
    # The connection the search used waits in the pool: a session on the replica.
    database = archive["engine"].url.database
    count = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    assert standby.query(standby.of(archive["url"]), count, database) >= 1


def test_a_grant_removed_on_the_primary_stops_counting_within_the_bound(archive, standby):
    clock, client, alice = archive["clock"], archive["client"], bearer(archive["tokens"]["alice"])
    current(archive)
    standby.pause_replay()
    try:
        on_primary(archive, REMOVE_GRANT, MINE)
        removed_at = clock()
        clock.advance(LAG - 0.05)
        assert search(client, headers=alice) == ({MINE}, "replica")  # within the bound: the lagging replica
        clock.advance(0.1)
        assert search(client, headers=alice) == (set(), "primary")   # past it: never
        assert clock() - removed_at > LAG
        assert health(archive)["replica"]["state"] == "lagging"
    finally:
        standby.resume_replay()
    current(archive)
    assert search(client, headers=alice) == (set(), "replica")


def test_a_revoked_token_stops_counting_within_the_bound(archive, standby):
    clock, client, alice = archive["clock"], archive["client"], bearer(archive["tokens"]["alice"])
    current(archive)
    standby.pause_replay()
    try:
        on_primary(archive, "UPDATE api_tokens SET revoked_at = now() WHERE token_hash = %s",
                   principals.token_hash(archive["tokens"]["alice"]))
        clock.advance(LAG - 0.05)
        assert search(client, headers=alice) == ({MINE}, "replica")
        clock.advance(0.1)
        response = client.simulate_get("/api/v1/files", headers=alice)
        assert response.status_code == 401 and response.headers["X-Archive-Read-From"] == "primary"
    finally:
        standby.resume_replay()
    current(archive)
    response = client.simulate_get("/api/v1/files", headers=alice)
    assert response.status_code == 401 and response.headers["X-Archive-Read-From"] == "replica"


def test_a_replica_that_stops_is_not_waited_for_and_is_read_again_when_back(archive, standby):
    clock, client = archive["clock"], archive["client"]
    current(archive)
    standby.crash()
    try:
        # The last check found it in use: the request finds it down when it connects.
        response = client.simulate_get("/api/v1/files", params={"object": "M31"})
        assert response.status_code == 200 and response.headers["X-Archive-Read-From"] == "primary"
        assert {r["path"] for r in response.json["results"]} == {PUBLIC}
        report = health(archive)
        assert report["reads_from"] == "primary" and report["replica"]["state"].startswith("unreachable: ")
        clock.advance(MAX_RETRY)  # tried again, still down
        assert search(client) == (set(), "primary")
        assert health(archive)["replica"]["state"].startswith("unreachable: ")
    finally:
        standby.start()
    current(archive)  # retried after its back-off, found answering and caught up
    assert search(client) == (set(), "replica")


def test_wal_the_primary_has_not_flushed_does_not_hold_the_replica_back(archive):
    """A transaction left open on an otherwise idle primary has written WAL that nothing
    flushes, out of the replica's sight; a check flushes it, so the replica stays in use."""
    idle = psycopg2.connect(archive["url"])
    try:
        with idle.cursor() as cursor:
            cursor.execute("INSERT INTO principals (name, kind) VALUES ('carol', 'user')")
        current(archive)
        assert search(archive["client"])[1] == "replica"
    finally:
        idle.close()


def test_a_server_that_is_not_a_standby_of_the_primary_is_never_read(archive):
    # The primary itself, as a read_url copied from url would name it.
    replica = Replica(db.create_engine(archive["url"]), archive["engine"], LAG, archive["clock"])
    client = falcon.testing.TestClient(create_app(archive["config"], archive["engine"], replica))
    try:
        assert search(client, headers=bearer(archive["tokens"]["alice"])) == ({MINE}, "primary")
        report = client.simulate_get("/api/v1/health").json
        assert report["reads_from"] == "primary"
        assert report["replica"] == {"state": "not a standby of the primary", "lag_s": None}
    finally:
        replica.engine.dispose()


# -- through gunicorn, in real time -----------------------------------------------------------

@pytest.fixture(scope="module")
def served(standby, tmp_path_factory):
    """The test archive served by gunicorn, configured with the replica as database.read_url."""
    base = tmp_path_factory.mktemp("replicated-api")
    built = build_archive(standby.primary.url(), base)
    standby.caught_up()
    built["config_path"].write_text(yaml.safe_dump(
        {**built["settings"], "database": {"read_url": standby.of(built["url"]), "max_replica_lag": LAG}}))
    server = ApiServer(built["config_path"], built["url"], base / "gunicorn.log")
    yield {**built, "server": server}
    server.stop()
    built["close"]()


def served_search(served, headers=None):
    response = served["server"].get("/api/v1/files", params={"object": "SN 2026abc"}, headers=headers)
    assert response.status_code == 200, response.text
    return {r["path"] for r in response.json()["results"]}, response.headers["X-Archive-Read-From"]


def test_gunicorn_reads_from_the_replica_falls_back_when_it_stops_and_returns_when_it_is_back(served, standby):
    server = served["server"]
    wait_until(lambda: served_search(served)[1] == "replica", timeout=10, what="reads from the replica")

    def health_says_replica():  # each worker checks for itself, from its first request on
        health = server.get("/api/v1/health").json()
        return health["reads_from"] == "replica" and health["replica"]["state"] == "in use"
    wait_until(health_says_replica, timeout=10, what="health to say reads come from the replica")
    standby.crash()
    try:
        started = time.monotonic()
        for _ in range(20):
            response = server.get("/api/v1/files", params={"object": "M31"})
            assert response.status_code == 200 and response.headers["X-Archive-Read-From"] == "primary"
        assert time.monotonic() - started < 5  # nobody waits for the replica
        # A worker that last saw the replica lagging or catching up reads the primary and finds out at its next check.
        wait_until(lambda: server.get("/api/v1/health").json()["replica"]["state"].startswith("unreachable: "),
                   timeout=10, what="health to say the replica is unreachable")
    finally:
        standby.start()
    wait_until(lambda: served_search(served)[1] == "replica", timeout=MAX_RETRY + 10,
               what="reads from the replica once it is back")


def test_gunicorn_never_shows_a_file_past_the_bound_after_its_grant_is_removed(served, standby):
    alice = bearer(served["tokens"]["alice"])
    wait_until(lambda: served_search(served, alice) == ({MINE}, "replica"), timeout=10, what="reads from the replica")
    standby.pause_replay()
    try:
        on_primary(served, REMOVE_GRANT, MINE)
        removed = time.monotonic()  # the commit is at least this old
        answers = []  # (seconds since the removal when asked, shown, read from)
        while time.monotonic() < removed + LAG + 1:
            asked = time.monotonic() - removed
            found, read_from = served_search(served, alice)
            answers.append((asked, MINE in found, read_from))
    finally:
        standby.resume_replay()
    late = [a for a in answers if a[0] > LAG]
    assert late and not any(shown for _, shown, _ in late), late
    assert all(read_from == "primary" for _, _, read_from in late[-5:])
    # The replica, lagging, did answer within the bound: it is the bound that held, not luck.
    assert any(shown and read_from == "replica" for asked, shown, read_from in answers if asked <= LAG)
    wait_until(lambda: served_search(served, alice) == (set(), "replica"), timeout=10,
               what="reads from the replica, caught up")


def test_gunicorn_answers_tap_from_the_replica_and_keeps_async_jobs_on_the_primary(served, standby):
    server = served["server"]
    query = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": "SELECT obs_id FROM ivoa.obscore"}

    def tap_from_the_replica():
        response = requests.post(server.base + "/ivoa/tap/sync", data=query, timeout=30)
        assert response.status_code == 200, response.text
        return response.headers["X-Archive-Read-From"] == "replica"
    wait_until(tap_from_the_replica, timeout=10, what="a TAP query answered from the replica")
    standby.pause_replay()  # a job read from the replica would not be found
    try:
        session = requests.Session()
        created = session.post(server.base + "/ivoa/tap/async", data=query, allow_redirects=False, timeout=30)
        assert created.status_code == 303, created.text
        assert session.get(created.headers["Location"] + "/phase", timeout=30).text == "PENDING"
    finally:
        standby.resume_replay()


def test_gunicorn_waits_a_few_seconds_at_most_for_a_replica_that_never_answers(served, tmp_path):
    with socket.socket() as silent:  # connections are taken, nothing is ever said
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        config = tmp_path / "silent.yaml"
        config.write_text(yaml.safe_dump({**served["settings"], "database": {
            "read_url": f"postgresql://archive:x@127.0.0.1:{silent.getsockname()[1]}/archive", "max_replica_lag": LAG}}))
        server = ApiServer(config, served["url"], tmp_path / "gunicorn.log")
        try:
            for _ in range(20):
                started = time.monotonic()
                response = server.get("/api/v1/files", params={"object": "M31"})
                assert response.status_code == 200 and response.headers["X-Archive-Read-From"] == "primary"
                assert time.monotonic() - started < 5
            # A worker whose first check is still waiting says it has not checked yet.
            wait_until(lambda: server.get("/api/v1/health").json()["replica"]["state"].startswith("unreachable: "),
                       timeout=10, what="health to say the replica is unreachable")
        finally:
            server.stop()


# -- configuration ------------------------------------------------------------------------------

def test_read_url_and_lag_come_from_the_database_section_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("ARCHIVE_DATABASE_READ_URL", raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"database": {"read_url": "postgresql://replica/archive"}}))
    config = load_config(str(path))
    assert (config.database_read_url, config.max_replica_lag) == ("postgresql://replica/archive", 30.0)
    monkeypatch.setenv("ARCHIVE_DATABASE_READ_URL", "postgresql://other/archive")
    assert load_config(str(path)).database_read_url == "postgresql://other/archive"


@pytest.mark.parametrize("section, key", [({"read_url": "mysql://replica/archive"}, "database.read_url"),
                                          ({"max_replica_lag": 0}, "database.max_replica_lag")])
def test_a_bad_replica_setting_is_refused_by_name(tmp_path, monkeypatch, section, key):
    monkeypatch.delenv("ARCHIVE_DATABASE_READ_URL", raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"database": section}))
    with pytest.raises(ConfigError, match=f": {key}: "):
        load_config(str(path))
