"""Asynchronous TAP (UWS 1.1) at /ivoa/tap/async on the real API: jobs that pyvo runs, that
survive a restart of the API and the death of their executor, and that are their owner's alone."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import time
import xml.etree.ElementTree as ET

import falcon.testing
import psycopg2
import pytest
import pyvo
import requests
import yaml

from api.app import create_app
from api.ivoa import jobs
from apiserver import FRONT_END, NIGHT, OLD, ApiServer, build_archive

UWS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0", "xlink": "http://www.w3.org/1999/xlink",
       "v": "http://www.ivoa.net/xml/VOTable/v1.3"}
BULK = 300  # extra public rows: a four-way cross join of them runs for minutes
LONG = "SELECT count(*) AS n FROM ivoa.obscore a, ivoa.obscore b, ivoa.obscore c, ivoa.obscore d"
PUBLIC = "SELECT obs_id FROM ivoa.obscore WHERE obs_id NOT LIKE 'data/bulk/%'"


def _bulk(url: str) -> None:
    connection = psycopg2.connect(url)
    with connection, connection.cursor() as cursor:
        cursor.execute("""
            INSERT INTO files (root, path, size, mtime, header, public_date, object)
            SELECT 'data', 'bulk/' || g || '.fits', 2880, now(), '', '2001-01-01', 'bulk'
            FROM generate_series(1, %s) g""", (BULK,))
    connection.close()


@pytest.fixture(scope="module")
def archive(cluster, tmp_path_factory):
    base = tmp_path_factory.mktemp("tap-async")
    built = build_archive(cluster, base)
    _bulk(built["url"])
    results = base / "results"
    settings = {**built["settings"], "ivoa": {"authority": "obs.example.org", "results_dir": str(results),
                                              "jobs_per_user": 2, "async_duration": 120}}
    built["config_path"].write_text(yaml.safe_dump(settings))
    built["results"] = results
    built["log"] = base / "gunicorn.log"
    built["server"] = ApiServer(built["config_path"], built["url"], built["log"])
    yield built
    built["server"].stop()
    built["close"]()


def _tap(archive) -> str:
    return archive["server"].base + "/ivoa/tap"


def _session(archive, user: str | None = None) -> requests.Session:
    """One connection kept for every request, as pyvo's sessions do, refusals included."""
    session = requests.Session()
    if user:
        session.headers["Authorization"] = f"Bearer {archive['tokens'][user]}"
    return session


def _service(archive, user: str | None = None) -> pyvo.dal.TAPService:
    return pyvo.dal.TAPService(_tap(archive), session=_session(archive, user))


def _row(archive, job_id: str) -> dict:
    connection = psycopg2.connect(archive["url"])
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM tap_jobs WHERE id = %s", (job_id,))
            row = cursor.fetchone()
            return None if row is None else dict(zip([d.name for d in cursor.description], row))
    finally:
        connection.close()


def _until(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.1)


def _create(archive, session: requests.Session, query: str, **extra) -> str:
    response = session.post(_tap(archive) + "/async", data={"LANG": "ADQL", "QUERY": query, **extra},
                            allow_redirects=False, timeout=30)
    assert response.status_code == 303, response.text
    return response.headers["Location"]


def _phase(session: requests.Session, url: str) -> str:
    return session.get(url + "/phase", timeout=30).text


def _backend_queries(archive) -> list[str]:
    connection = psycopg2.connect(archive["url"])
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT query FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%adql_query%' "
                           "AND pid <> pg_backend_pid()")
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


# -- with pyvo --------------------------------------------------------------------------------

def test_pyvo_run_async_gets_the_rows_anyone_may_see(archive):
    result = _service(archive).run_async(PUBLIC)
    assert sorted(result["obs_id"]) == sorted([f"data/{OLD}/cam/public1.fits", f"data/{OLD}/cam/public2.fits",
                                               f"data/{OLD}/cam/big.fits", f"data/{OLD}/cam/escape.fits"])


def test_pyvo_submit_run_wait_fetch_as_a_user(archive):
    job = _service(archive, "alice").submit_job(PUBLIC + " AND obs_id LIKE '%/mine.fits'", runid="night-42")
    assert job.phase == "PENDING" and job.uws_version == "1.1" and job.owner == "alice"
    started = time.monotonic()
    job.run().wait(timeout=60)
    assert time.monotonic() - started < 10  # WAIT answered as the phase changed, not by polling
    assert job.phase == "COMPLETED"
    assert list(job.fetch_result()["obs_id"]) == [f"data/{NIGHT}/cam/mine.fits"]
    document = ET.fromstring(_session(archive, "alice").get(job.url, timeout=30).content)
    assert document.findtext("uws:runId", namespaces=UWS) == "night-42"
    assert document.find("uws:results/uws:result", UWS).get(f"{{{UWS['xlink']}}}href") == job.url + "/results/result"
    url = job.url
    job.delete()
    assert _session(archive, "alice").get(url, timeout=30).status_code == 404


def test_a_query_that_cannot_run_ends_the_job_in_error(archive):
    job = _service(archive).submit_job("SELECT nonsense FROM ivoa.obscore")
    job.run().wait(timeout=60)
    assert job.phase == "ERROR"
    with pytest.raises(pyvo.dal.DALQueryError, match="nonsense"):
        job.raise_if_error()
    error = requests.get(job.url + "/error", timeout=30)
    assert error.headers["Content-Type"].startswith("application/x-votable+xml")
    info = ET.fromstring(error.content).find("v:RESOURCE/v:INFO[@name='QUERY_STATUS']", UWS)
    assert info.get("value") == "ERROR" and "nonsense" in info.text


def test_a_job_runs_for_its_execution_duration_at_most(archive):
    session = _session(archive)
    url = _create(archive, session, LONG, PHASE="RUN", EXECUTIONDURATION="1")
    _until(lambda: _phase(session, url) == "ERROR", 15, "the job ends in ERROR")
    message = ET.fromstring(session.get(url, timeout=30).content).findtext("uws:errorSummary/uws:message",
                                                                          namespaces=UWS)
    assert "limit of 1 s" in message


def test_abort_cancels_a_running_query(archive):
    session = _session(archive, "bob")
    url = _create(archive, session, LONG, PHASE="RUN")
    _until(lambda: _phase(session, url) == "EXECUTING", 30, "the job runs")
    _until(lambda: _backend_queries(archive), 10, "its query runs in the database")
    started = time.monotonic()
    response = session.post(url + "/phase", data={"PHASE": "ABORT"}, allow_redirects=False, timeout=30)
    assert response.status_code == 303 and response.headers["Location"] == url
    assert _phase(session, url) == "ABORTED"
    _until(lambda: not _backend_queries(archive), 5, "the query is cancelled")
    assert time.monotonic() - started < 5
    time.sleep(1)  # the executor's query failing must not overwrite the phase
    assert _phase(session, url) == "ABORTED"
    assert not [path for path in archive["results"].iterdir() if path.name.startswith(url.rsplit("/", 1)[1])]


def test_wait_blocks_until_the_phase_changes_and_no_longer_than_asked(archive):
    session = _session(archive)
    url = _create(archive, session, PUBLIC)
    started = time.monotonic()
    document = ET.fromstring(session.get(url, params={"WAIT": "1"}, timeout=30).content)
    assert document.findtext("uws:phase", namespaces=UWS) == "PENDING"
    assert 0.9 < time.monotonic() - started < 3
    session.post(url + "/phase", data={"PHASE": "RUN"}, timeout=30)
    document = ET.fromstring(session.get(url, params={"WAIT": "-1", "PHASE": "QUEUED"}, timeout=30).content)
    assert document.findtext("uws:phase", namespaces=UWS) in ("EXECUTING", "COMPLETED")
    _until(lambda: ET.fromstring(session.get(url, params={"WAIT": "30"}, timeout=60).content)
           .findtext("uws:phase", namespaces=UWS) == "COMPLETED", 30, "the job completes")


# -- whose jobs -------------------------------------------------------------------------------

def test_a_job_is_its_owners_alone(archive):
    alice = _session(archive, "alice")
    bob, anonymous = _session(archive, "bob"), _session(archive)
    url = _create(archive, alice, PUBLIC)
    for stranger in (bob, anonymous):
        for part in ("", "/phase", "/parameters", "/results", "/error", "/owner", "/quote"):
            response = stranger.get(url + part, timeout=30)
            assert response.status_code == 404, (part, response.text)
        assert stranger.delete(url, allow_redirects=False, timeout=30).status_code == 404
        assert stranger.post(url + "/phase", data={"PHASE": "RUN"}, timeout=30).status_code == 404
        listed = ET.fromstring(stranger.get(_tap(archive) + "/async", timeout=30).content)
        assert url.rsplit("/", 1)[1] not in [ref.get("id") for ref in listed.findall("uws:jobref", UWS)]
    assert _phase(alice, url) == "PENDING"
    listed = ET.fromstring(alice.get(_tap(archive) + "/async", timeout=30).content)
    assert url.rsplit("/", 1)[1] in [ref.get("id") for ref in listed.findall("uws:jobref", UWS)]


def test_anonymous_callers_are_told_apart_by_their_address(archive):
    front_end = {"X-Archive-Secret": FRONT_END["X-Archive-Secret"]}
    here = requests.Session()
    here.headers.update({**front_end, "X-Forwarded-For": "192.0.2.1"})
    there = requests.Session()
    there.headers.update({**front_end, "X-Forwarded-For": "192.0.2.2"})
    url = _create(archive, here, PUBLIC)
    assert here.get(url, timeout=30).status_code == 200
    assert there.get(url, timeout=30).status_code == 404
    owner = ET.fromstring(here.get(url, timeout=30).content).find("uws:ownerId", UWS)
    assert owner.get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true"


def test_one_job_too_many_is_refused_and_stays_pending(archive):
    session = _session(archive, "bob")
    running = [_create(archive, session, LONG, PHASE="RUN") for _ in range(2)]
    try:
        refused = session.post(_tap(archive) + "/async", data={"LANG": "ADQL", "QUERY": LONG, "PHASE": "RUN"},
                               allow_redirects=False, timeout=30)
        assert refused.status_code == 429 and refused.headers["Retry-After"]
        info = ET.fromstring(refused.content).find("v:RESOURCE/v:INFO[@name='QUERY_STATUS']", UWS)
        assert info.get("value") == "ERROR" and "jobs_per_user" in info.text
        job = _service(archive, "bob").submit_job(PUBLIC)
        with pytest.raises(pyvo.dal.DALRateLimitError):
            job.run()
        assert job.phase == "PENDING"
        assert _service(archive, "alice").run_async(PUBLIC)  # another caller is not held back
    finally:
        for url in running:
            session.post(url + "/phase", data={"PHASE": "ABORT"}, timeout=30)
    job.run().wait(timeout=60)
    assert job.phase == "COMPLETED"


def test_a_job_runs_with_its_owners_rights_as_they_are_when_it_runs(archive):
    alice = _session(archive, "alice")
    url = _create(archive, alice, "SELECT obs_id FROM ivoa.obscore WHERE obs_id LIKE '%/mine.fits'")
    connection = psycopg2.connect(archive["url"])
    with connection, connection.cursor() as cursor:
        cursor.execute("UPDATE principals SET disabled = true WHERE name = 'alice'")
    try:
        # Her token is refused now; the front end may still name her.
        assert alice.get(url, timeout=30).status_code == 401
        as_named = requests.Session()
        as_named.headers.update(FRONT_END)
        as_named.post(url + "/phase", data={"PHASE": "RUN"}, timeout=30)
        _until(lambda: _phase(as_named, url) == "COMPLETED", 30, "the job completes")
        rows = ET.fromstring(as_named.get(url + "/results/result", timeout=30).content).findall(".//v:TR", UWS)
        assert rows == []
    finally:
        with connection, connection.cursor() as cursor:
            cursor.execute("UPDATE principals SET disabled = false WHERE name = 'alice'")
        connection.close()


# -- lifetime ---------------------------------------------------------------------------------

def test_destruction_removes_the_result_and_the_job(archive):
    session = _session(archive)
    url = _create(archive, session, PUBLIC, PHASE="RUN")
    _until(lambda: _phase(session, url) == "COMPLETED", 30, "the job completes")
    job_id = url.rsplit("/", 1)[1]
    name = _row(archive, job_id)["result_name"]
    assert (archive["results"] / name).is_file()
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    response = session.post(url + "/destruction", data={"DESTRUCTION": soon.isoformat()}, allow_redirects=False,
                            timeout=30)
    assert response.status_code == 303
    # Nobody reads the job: the sweep removes it.
    _until(lambda: _row(archive, job_id) is None, jobs.HEARTBEAT * 3, "the sweep destroys the job")
    assert not (archive["results"] / name).exists()
    assert session.get(url, timeout=30).status_code == 404


def test_a_restart_of_the_api_loses_no_job(archive):
    session = _session(archive, "alice")
    done = _create(archive, session, PUBLIC, PHASE="RUN")
    _until(lambda: _phase(session, done) == "COMPLETED", 30, "the job completes")
    result = session.get(done + "/results/result", timeout=30).content
    pending = _create(archive, session, PUBLIC)
    running = _create(archive, session, LONG, PHASE="RUN")
    _until(lambda: _phase(session, running) == "EXECUTING", 30, "the long job runs")
    before = _row(archive, running.rsplit("/", 1)[1])["executor_pid"]
    archive["server"].stop()
    # Stopped gracefully, a worker puts the job it was running back in the queue.
    assert _row(archive, running.rsplit("/", 1)[1])["phase"] == "QUEUED"
    archive["server"] = server = ApiServer(archive["config_path"], archive["url"], archive["log"])
    moved = server.base + "/ivoa/tap/async/"
    done, pending, running = (moved + url.rsplit("/", 1)[1] for url in (done, pending, running))
    assert session.get(done + "/results/result", timeout=30).content == result
    assert _phase(session, pending) == "PENDING"
    _until(lambda: _phase(session, running) == "EXECUTING", 30, "the long job runs again")
    assert _row(archive, running.rsplit("/", 1)[1])["executor_pid"] != before
    session.post(running + "/phase", data={"PHASE": "ABORT"}, timeout=30)
    # Even an abort that comes before the query has started (while it is translated) stops it.
    _until(lambda: not _backend_queries(archive), 3 * jobs.HEARTBEAT, "the aborted query is stopped")


def test_a_job_whose_executor_is_killed_ends_in_error(archive):
    session = _session(archive, "bob")
    url = _create(archive, session, LONG, PHASE="RUN")
    _until(lambda: _phase(session, url) == "EXECUTING", 30, "the job runs")
    _until(lambda: _backend_queries(archive), 10, "its query runs in the database")
    os.kill(_row(archive, url.rsplit("/", 1)[1])["executor_pid"], signal.SIGKILL)
    session = _session(archive, "bob")  # not a connection the killed worker held
    _until(lambda: _phase(session, url) == "ERROR", 10, "the job ends in ERROR")
    message = ET.fromstring(session.get(url, timeout=30).content).findtext("uws:errorSummary/uws:message",
                                                                          namespaces=UWS)
    assert message == jobs.GONE
    _until(lambda: not _backend_queries(archive), 10, "its query is stopped")
    assert _service(archive, "bob").run_async(PUBLIC)  # gunicorn's new worker runs jobs again


# -- the protocol in detail, in process (no executor runs here) -------------------------------

@pytest.fixture(scope="module")
def client(cluster, archive):
    from archive_daemon import db
    from archive_daemon.config import load_config
    from conftest import fresh_database
    url, drop = fresh_database(cluster)
    engine = db.create_engine(url)
    yield falcon.testing.TestClient(create_app(load_config(str(archive["config_path"])), engine))
    engine.dispose()
    drop()


def _new(client, **params) -> str:
    response = client.simulate_post("/ivoa/tap/async", params=params)
    assert response.status == "303 See Other", response.text
    return response.headers["Location"].removeprefix("http://falconframework.org")


def _refused(response, status: int, word: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/x-votable+xml")
    info = ET.fromstring(response.content).find("v:RESOURCE/v:INFO[@name='QUERY_STATUS']", UWS)
    assert info.get("value") == "ERROR" and word in info.text, info.text


def test_the_job_document_is_uws_1_1(client):
    path = _new(client, lang="ADQL", Query="SELECT 1 FROM ivoa.obscore", MAXREC="5", unknown="ignored")
    client.simulate_post(path + "/parameters", params={"runId": "tap-lint-7"})
    document = ET.fromstring(client.simulate_get(path).content)
    assert document.tag == f"{{{UWS['uws']}}}job" and document.get("version") == "1.1"
    assert [child.tag.split("}")[1] for child in document] == [
        "jobId", "runId", "ownerId", "phase", "quote", "creationTime", "startTime", "endTime", "executionDuration",
        "destruction", "parameters", "results"]
    assert document.findtext("uws:runId", namespaces=UWS) == "tap-lint-7"
    assert {p.get("id"): p.text for p in document.findall("uws:parameters/uws:parameter", UWS)} == {
        "lang": "ADQL", "query": "SELECT 1 FROM ivoa.obscore", "maxrec": "5"}
    created = dt.datetime.fromisoformat(document.findtext("uws:creationTime", namespaces=UWS))
    destruction = dt.datetime.fromisoformat(client.simulate_get(path + "/destruction").text)
    assert (destruction - created).total_seconds() == pytest.approx(7 * 86400, abs=2)
    assert client.simulate_get(path + "/phase").text == "PENDING"
    assert client.simulate_get(path + "/quote").text == ""
    assert client.simulate_get(path + "/owner").text == ""
    assert client.simulate_get(path + "/error").status_code == 404
    assert client.simulate_get(path + "/results/result").status_code == 404


def test_execution_duration_and_destruction_are_capped(client):
    path = _new(client, LANG="ADQL", QUERY="SELECT 1 FROM ivoa.obscore")
    for asked, kept in (("30", "30"), ("99999", "120"), ("0", "120"), ("2.5", "3")):
        response = client.simulate_post(path + "/executionduration", params={"EXECUTIONDURATION": asked})
        assert response.status_code == 303
        assert client.simulate_get(path + "/executionduration").text == kept
    created = dt.datetime.fromisoformat(
        ET.fromstring(client.simulate_get(path).content).findtext("uws:creationTime", namespaces=UWS))
    client.simulate_post(path + "/destruction", params={"DESTRUCTION": "2999-01-01T00:00:00Z"})
    kept = dt.datetime.fromisoformat(client.simulate_get(path + "/destruction").text)
    assert (kept - created).total_seconds() == pytest.approx(7 * 86400, abs=2)
    _refused(client.simulate_post(path + "/destruction", params={"DESTRUCTION": "soon"}), 400, "DESTRUCTION")
    _refused(client.simulate_post(path + "/executionduration", params={"EXECUTIONDURATION": "nan"}), 400,
             "EXECUTIONDURATION")


def test_bad_requests_are_named(client):
    path = _new(client, LANG="ADQL", QUERY="SELECT 1 FROM ivoa.obscore")
    _refused(client.simulate_post(path + "/phase", params={"PHASE": "SUSPEND"}), 400, "PHASE")
    _refused(client.simulate_post(path + "/phase"), 400, "PHASE")
    _refused(client.simulate_post(path, params={"ACTION": "EXPLODE"}), 400, "ACTION")
    _refused(client.simulate_get(path, params={"WAIT": "soon"}), 400, "WAIT")
    _refused(client.simulate_post("/ivoa/tap/async", params={"QUERY": "SELECT\x00 1"}), 400, "QUERY")
    _refused(client.simulate_post("/ivoa/tap/async", params={"QUERY": "a", "query": "b"}), 400, "QUERY")
    _refused(client.simulate_get("/ivoa/tap/async", params={"PHASE": "DONE"}), 400, "PHASE")
    _refused(client.simulate_get("/ivoa/tap/async/" + "0" * 32), 404, "no job")
    _refused(client.simulate_get("/ivoa/tap/async/not-a-job';--/phase"), 404, "no job")


def test_a_queued_job_keeps_its_query(client):
    path = _new(client, LANG="ADQL", QUERY="SELECT 1 FROM ivoa.obscore", PHASE="RUN")
    assert client.simulate_get(path + "/phase").text == "QUEUED"
    _refused(client.simulate_post(path + "/parameters", params={"QUERY": "SELECT 2 FROM ivoa.obscore"}), 409,
             "PENDING")
    assert client.simulate_post(path + "/parameters", params={"RUNID": "later"}).status_code == 303
    assert client.simulate_post(path + "/phase", params={"PHASE": "ABORT"}).status_code == 303
    document = ET.fromstring(client.simulate_get(path).content)
    assert document.findtext("uws:phase", namespaces=UWS) == "ABORTED"
    assert document.findtext("uws:runId", namespaces=UWS) == "later"
    response = client.simulate_post(path, params={"ACTION": "DELETE"})
    assert response.status == "303 See Other" and response.headers["Location"].endswith("/ivoa/tap/async")
    assert client.simulate_get(path).status_code == 404


def test_the_job_list_filters(client):
    first = _new(client, LANG="ADQL", QUERY="SELECT 1 FROM ivoa.obscore")
    time.sleep(0.02)
    second = _new(client, LANG="ADQL", QUERY="SELECT 1 FROM ivoa.obscore")
    client.simulate_post(second + "/phase", params={"PHASE": "ABORT"})

    def listed(**params) -> list[str]:
        document = ET.fromstring(client.simulate_get("/ivoa/tap/async", params=params).content)
        return [ref.get("id") for ref in document.findall("uws:jobref", UWS)]
    first, second = first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]
    assert listed(LAST="2") == [second, first]
    assert second in listed(PHASE="ABORTED") and first not in listed(PHASE="ABORTED")
    assert {first, second} <= set(listed(PHASE=["ABORTED", "PENDING"]))
    created = dt.datetime.fromisoformat(ET.fromstring(client.simulate_get(f"/ivoa/tap/async/{first}").content)
                                        .findtext("uws:creationTime", namespaces=UWS))
    after = (created + dt.timedelta(milliseconds=5)).isoformat()  # shown to the millisecond
    assert second in listed(AFTER=after) and first not in listed(AFTER=after)


def test_an_executor_runs_what_it_is_given_and_results_can_go_out_by_x_sendfile(cluster, archive, tmp_path):
    from archive_daemon import db
    from archive_daemon.config import load_config
    from conftest import fresh_database
    from api.ivoa.executor import Service
    config = load_config(str(archive["config_path"]))
    config = dataclasses.replace(config, api=dataclasses.replace(config.api, x_sendfile=True),
                                 ivoa=dataclasses.replace(config.ivoa, results_dir=tmp_path / "results"))
    url, drop = fresh_database(cluster)
    engine = db.create_engine(url)
    app = create_app(config, engine)
    service = Service(config, engine, work=lambda connection, principals, job, out: out.write(b"rows") and "text/plain")
    service.start()
    try:
        client = falcon.testing.TestClient(app)
        path = _new(client, LANG="ADQL", QUERY="anything", PHASE="RUN")
        # The application's own Service only queues; this one runs what is queued.
        _until(lambda: client.simulate_get(path + "/phase").text == "COMPLETED", 10, "the job completes")
        response = client.simulate_get(path + "/results/result")
        sent = response.headers["X-Sendfile"]
        assert response.headers["Content-Type"] == "text/plain" and response.content == b""
        assert open(sent, "rb").read() == b"rows" and os.stat(sent).st_mode & 0o777 == 0o640
        assert os.stat(tmp_path / "results").st_mode & 0o777 == 0o700
    finally:
        service.stop()
        engine.dispose()
        drop()
