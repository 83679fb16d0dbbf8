"""TAP's asynchronous queries as UWS 1.1 at /ivoa/tap/async: the job list, each job, and
its parts (phase, executionduration, destruction, quote, error, results, parameters, owner).

A job is its creator's alone: to anyone else every URL of it answers 404, as for a job that
never existed. Errors are DALI error VOTables. A caller already running ivoa.jobs_per_user
jobs who asks to run one more gets 429 with Retry-After (pyvo raises DALRateLimitError) and
the job stays PENDING, to be run later; a query that cannot run (bad ADQL, MAXREC, format)
ends its job in ERROR with the message at /error, as TAP has it.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import threading
import time
import xml.etree.ElementTree as ET
from typing import Callable

import falcon

from archive_daemon.config import Config

from . import tap, votable
from .adqlparse import MAX_CHARACTERS
from .executor import Service
from .jobs import PHASES, Caller, Job, Refused
from .query import QueryError
from ..streams import FileBody, Streams

JOBS = "/ivoa/tap/async"
# WAIT blocks at most this long: less than gunicorn's graceful_timeout, so that a stopping
# worker is never killed for a client waiting on it (its running jobs then go back to the queue).
MAX_WAIT = 20.0
# Requests of one worker process blocked in WAIT at once; more are answered at once, as if
# WAIT had not been given (UWS allows it), so that waiting clients never take every thread.
WAITERS = 2
RECHECK = 5.0  # seconds between reads while waiting, in case a change was not heard of
UWS = "http://www.ivoa.net/xml/UWS/v1.0"
XLINK = "http://www.w3.org/1999/xlink"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
for _prefix, _uri in (("uws", UWS), ("xlink", XLINK), ("xsi", XSI)):
    ET.register_namespace(_prefix, _uri)

QUERY_PARAMETERS = ("request", "lang", "query", "maxrec", "responseformat", "format", "upload")
SETTABLE = QUERY_PARAMETERS + ("runid", "phase", "executionduration", "destruction")
ACTIVE = ("PENDING", "QUEUED", "EXECUTING")  # what WAIT waits on
# XML 1.0 cannot carry these (a job document shows every parameter); PostgreSQL refuses NUL.
_UNFIT = {*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0xD800, 0xE000), 0xFFFE, 0xFFFF}


def add_routes(app: falcon.App, config: Config, service: Service, streams: Streams) -> None:
    app.add_route(JOBS, JobList(service))
    app.add_route(JOBS + "/{job_id}", JobResource(service))
    app.add_route(JOBS + "/{job_id}/phase", SettablePart(service, "phase", lambda job: job.phase))
    app.add_route(JOBS + "/{job_id}/executionduration",
                  SettablePart(service, "executionduration", lambda job: str(job.duration)))
    app.add_route(JOBS + "/{job_id}/destruction",
                  SettablePart(service, "destruction", lambda job: _instant(job.destruction)))
    app.add_route(JOBS + "/{job_id}/quote", Part(service, lambda job: ""))  # not known: UWS's empty quote
    app.add_route(JOBS + "/{job_id}/owner", Part(service, lambda job: job.owner or ""))
    app.add_route(JOBS + "/{job_id}/parameters", Parameters(service))
    app.add_route(JOBS + "/{job_id}/results", Results(service))
    app.add_route(JOBS + "/{job_id}/results/result", ResultFile(service, config, streams))
    app.add_route(JOBS + "/{job_id}/error", Error(service))


# -- requests ---------------------------------------------------------------------------------

def refusal(status: str, message: str, **headers: str) -> falcon.HTTPStatus:
    """An error answered as DALI has it: a VOTable with QUERY_STATUS=ERROR."""
    return falcon.HTTPStatus(status, headers={"Content-Type": votable.VOTABLE, **headers},
                             text=votable.error_document(message).decode())


def _caller(req: falcon.Request) -> Caller:
    return Caller(req.context.user, req.remote_addr)


def _given(req: falcon.Request, max_body: int) -> dict[str, list[str]]:
    """Every parameter of the request, by lower-case name (tap.form_parameters), or a refusal."""
    try:
        return tap.form_parameters(req, max_body)
    except QueryError as exc:
        raise refusal(falcon.HTTP_400, str(exc)) from None


def _form(given: dict[str, list[str]], allowed: tuple[str, ...]) -> dict[str, str]:
    """The parameters among `allowed` (names in any letter case; DALI and UWS say so), each
    given once; others are ignored, as DALI asks of services."""
    form = {}
    for name in allowed:
        values = given.get(name, [])
        if len(values) > 1:
            raise refusal(falcon.HTTP_400, f"{name.upper()}: given {len(values)} times; give it once")
        if values:
            if any(ord(c) in _UNFIT for c in values[0]):
                raise refusal(falcon.HTTP_400, f"{name.upper()}: contains a control character")
            if name == "query" and len(values[0]) > MAX_CHARACTERS:  # kept with the job: refused now
                raise refusal(falcon.HTTP_400, f"QUERY: longer than the limit of {MAX_CHARACTERS} characters")
            form[name] = values[0]
    return form


def _query_parameters(form: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in form.items() if name in QUERY_PARAMETERS}


def _uws_settings(form: dict[str, str]) -> dict:
    """runId, execution duration and destruction time as given (None: not given)."""
    duration, destruction = form.get("executionduration"), form.get("destruction")
    return {"run_id": form.get("runid"),
            "duration": None if duration is None else _seconds("EXECUTIONDURATION", duration),
            "destruction": None if destruction is None else _moment("DESTRUCTION", destruction)}


def _too_many(exc: Refused) -> falcon.HTTPStatus:
    return refusal(falcon.HTTP_429, str(exc), **{"Retry-After": "30"})


def _job_url(req: falcon.Request, job_id: str) -> str:
    return f"{req.prefix}{JOBS}/{job_id}"


def _see_other(resp: falcon.Response, location: str) -> None:
    resp.status = falcon.HTTP_303
    resp.location = location


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise refusal(falcon.HTTP_400, f"{name}: {text[:40]!r} is not a number of seconds")
    return value


def _moment(name: str, text: str) -> dt.datetime:
    """ISO 8601; without a time zone, UTC."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
        return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)
    except (ValueError, OverflowError):
        raise refusal(falcon.HTTP_400, f"{name}: {text[:40]!r} is not an ISO 8601 time "
                                       "(2030-01-02T03:04:05Z)") from None


class _Resource:
    def __init__(self, service: Service):
        self.service = service
        self.store = service.store

    def given(self, req: falcon.Request) -> dict[str, list[str]]:
        return _given(req, self.service.max_body)

    def form(self, req: falcon.Request, allowed: tuple[str, ...]) -> dict[str, str]:
        return _form(self.given(req), allowed)

    def job(self, req: falcon.Request, job_id: str) -> Job:
        job = self.store.find(req.context.primary, job_id, _caller(req))
        if job is None:
            raise refusal(falcon.HTTP_404, f"no job {job_id[:40]!r} here (it may have been destroyed)")
        return job

    def apply(self, req: falcon.Request, job: Job, form: dict[str, str]) -> None:
        """Change the job as `form` asks (UWS's settable parts, TAP's query parameters)."""
        phase = form.get("phase", "").upper()
        if phase not in ("", "RUN", "ABORT"):
            raise refusal(falcon.HTTP_400, f"PHASE: {form['phase'][:40]!r} is not RUN or ABORT")
        parameters = _query_parameters(form)
        changes = parameters or any(name in form for name in ("runid", "executionduration", "destruction"))
        if changes and not self.store.update(req.context.primary, job, parameters=parameters, **_uws_settings(form)):
            raise refusal(falcon.HTTP_409, f"the job is {job.phase}: its query and execution duration can change "
                                           "only while it is PENDING")
        try:
            if phase == "RUN":
                self.store.start(req.context.primary, job, _caller(req))
            elif phase == "ABORT":
                self.store.abort(req.context.primary, job)
        except Refused as exc:
            raise _too_many(exc) from None


# -- resources --------------------------------------------------------------------------------

class JobList(_Resource):
    """GET: the caller's jobs (PHASE, AFTER, LAST filters); POST: a new job, 303 to it."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        phases = [p.upper() for p in self.given(req).get("phase", [])]
        unknown = [p for p in phases if p not in PHASES + ("HELD", "SUSPENDED", "UNKNOWN", "ARCHIVED")]
        if unknown:
            raise refusal(falcon.HTTP_400, f"PHASE: {unknown[0][:40]!r} is not a UWS phase")
        form = self.form(req, ("after", "last"))
        last = form.get("last")
        if last is not None and not (last.isascii() and last.isdigit() and len(last) < 10):
            raise refusal(falcon.HTTP_400, f"LAST: {last[:40]!r} is not a whole number")
        jobs = self.store.listing(req.context.primary, _caller(req), phases=phases,
                                  after=_moment("AFTER", form["after"]) if "after" in form else None,
                                  last=None if last is None else int(last))
        root = ET.Element(f"{{{UWS}}}jobs", version="1.1")
        for job in jobs:
            ref = ET.SubElement(root, f"{{{UWS}}}jobref", {"id": job.id, f"{{{XLINK}}}href": _job_url(req, job.id)})
            _add(ref, "phase", job.phase)
            if job.run_id is not None:
                _add(ref, "runId", job.run_id)
            _add(ref, "ownerId", job.owner, nillable=True)
            _add(ref, "creationTime", _instant(job.created))
        _xml(resp, root)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = self.form(req, SETTABLE)
        phase = form.get("phase", "").upper()
        if phase not in ("", "RUN"):
            raise refusal(falcon.HTTP_400, f"PHASE: {form['phase'][:40]!r}: a new job may only be RUN at once")
        try:
            job_id = self.store.create(req.context.primary, _caller(req), _query_parameters(form),
                                       base_url=req.prefix, run=phase == "RUN", **_uws_settings(form))
        except Refused as exc:
            raise _too_many(exc) from None
        _see_other(resp, _job_url(req, job_id))


class JobResource(_Resource):
    """GET: the job document (WAIT blocks for a change of phase); DELETE, or POST
    ACTION=DELETE: gone, 303 to the list; POST: change it, as /parameters."""

    def __init__(self, service: Service):
        super().__init__(service)
        self.waiters = threading.BoundedSemaphore(WAITERS)

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        form = self.form(req, ("wait", "phase"))
        wait = form.get("wait")
        if wait is None:
            return _xml(resp, _job_element(req, self.job(req, job_id)))
        if wait.strip() not in ("-1",) and not (wait.strip().isascii() and wait.strip().isdigit()):
            raise refusal(falcon.HTTP_400, f"WAIT: {wait[:40]!r} is not a number of seconds (or -1)")
        seconds = MAX_WAIT if wait.strip() == "-1" else min(MAX_WAIT, float(wait))
        if not self.waiters.acquire(blocking=False):
            return _xml(resp, _job_element(req, self.job(req, job_id)))
        # Watched before the first read: a change between the two is not missed.
        event = self.service.changes.watch(job_id)
        try:
            job = self.job(req, job_id)
            if job.phase in ACTIVE and form.get("phase", job.phase).upper() == job.phase:
                job = self._wait(req, job, event, seconds)
        finally:
            self.service.changes.unwatch(job_id, event)
            self.waiters.release()
        _xml(resp, _job_element(req, job))

    def _wait(self, req: falcon.Request, job: Job, event, seconds: float) -> Job:
        """The job once its phase has changed, or as it is after `seconds`; no database
        connection is held meanwhile."""
        first, deadline = job.phase, time.monotonic() + seconds
        while job.phase == first and (left := deadline - time.monotonic()) > 0:
            _release_connection(req)
            if event.wait(min(left, RECHECK)):
                event.clear()
            job = self.job(req, job.id)
        return job

    def on_delete(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        self.store.destroy(req.context.primary, self.job(req, job_id).id)
        _see_other(resp, req.prefix + JOBS)

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        form = self.form(req, SETTABLE + ("action",))
        job = self.job(req, job_id)
        action = form.pop("action", None)
        if action is not None:
            if action.upper() != "DELETE":
                raise refusal(falcon.HTTP_400, f"ACTION: {action[:40]!r} is not DELETE")
            return self.on_delete(req, resp, job_id)
        self.apply(req, job, form)
        _see_other(resp, _job_url(req, job.id))


class Part(_Resource):
    """One part of a job, as text/plain."""

    def __init__(self, service: Service, text: Callable[[Job], str]):
        super().__init__(service)
        self.text = text

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = self.text(self.job(req, job_id))


class SettablePart(Part):
    """A part that POSTing its name changes (303 to the job)."""

    def __init__(self, service: Service, name: str, text: Callable[[Job], str]):
        super().__init__(service, text)
        self.name = name

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        form = self.form(req, (self.name,))
        if not form:
            raise refusal(falcon.HTTP_400, f"{self.name.upper()}: missing")
        job = self.job(req, job_id)
        self.apply(req, job, form)
        _see_other(resp, _job_url(req, job.id))


class Parameters(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        _xml(resp, _parameters(None, self.job(req, job_id)))

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        form = self.form(req, SETTABLE)
        job = self.job(req, job_id)
        self.apply(req, job, form)
        _see_other(resp, _job_url(req, job.id))


class Results(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        _xml(resp, _results(None, req, self.job(req, job_id)))


class ResultFile(_Resource):
    """The result itself: sendfile through gunicorn, or X-Sendfile for Apache."""

    def __init__(self, service: Service, config: Config, streams: Streams):
        super().__init__(service)
        self.x_sendfile, self.streams = config.api.x_sendfile, streams

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        job = self.job(req, job_id)
        if job.phase != "COMPLETED":
            raise refusal(falcon.HTTP_404, f"the job is {job.phase}: it has no result")
        path = self.store.results / job.result_name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            raise refusal(falcon.HTTP_404, "the result is no longer stored; run the query again") from None
        resp.content_type = job.result_type
        if self.x_sendfile:
            os.close(fd)
            resp.set_header("X-Sendfile", str(path))
            return
        try:
            slot = self.streams.acquire(req)
        except BaseException:
            os.close(fd)
            raise
        size = os.fstat(fd).st_size
        resp.set_stream(FileBody(fd, size, slot), size)


class Error(_Resource):
    """The DALI error document of a job that ended in ERROR (or was aborted)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        job = self.job(req, job_id)
        if job.error is None:
            raise refusal(falcon.HTTP_404, f"the job is {job.phase}: it has no error")
        resp.content_type = votable.VOTABLE
        resp.data = votable.error_document(job.error)


# -- documents --------------------------------------------------------------------------------

def _instant(when: dt.datetime | None) -> str | None:
    """xs:dateTime in UTC, to the millisecond."""
    if when is None:
        return None
    when = when.astimezone(dt.timezone.utc)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}Z"


def _add(parent: ET.Element | None, name: str, text: str | None = None, *, nillable: bool = False,
         **attributes: str) -> ET.Element:
    """A UWS element; a nillable one without a value says xsi:nil."""
    tag = f"{{{UWS}}}{name}"
    element = ET.Element(tag, attributes) if parent is None else ET.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = text
    elif nillable:
        element.set(f"{{{XSI}}}nil", "true")
    return element


def _parameters(parent: ET.Element | None, job: Job) -> ET.Element:
    element = _add(parent, "parameters")
    for name, value in sorted(job.parameters.items()):
        _add(element, "parameter", value, id=name)
    return element


def _results(parent: ET.Element | None, req: falcon.Request, job: Job) -> ET.Element:
    element = _add(parent, "results")
    if job.phase == "COMPLETED":
        _add(element, "result", id="result", size=str(job.result_size), **{
            "mime-type": job.result_type, f"{{{XLINK}}}type": "simple",
            f"{{{XLINK}}}href": _job_url(req, job.id) + "/results/result"})
    return element


def _job_element(req: falcon.Request, job: Job) -> ET.Element:
    root = _add(None, "job", version="1.1")
    _add(root, "jobId", job.id)
    if job.run_id is not None:
        _add(root, "runId", job.run_id)
    _add(root, "ownerId", job.owner, nillable=True)
    _add(root, "phase", job.phase)
    _add(root, "quote", None, nillable=True)
    _add(root, "creationTime", _instant(job.created))
    _add(root, "startTime", _instant(job.started), nillable=True)
    _add(root, "endTime", _instant(job.ended), nillable=True)
    _add(root, "executionDuration", str(job.duration))
    _add(root, "destruction", _instant(job.destruction), nillable=True)
    _parameters(root, job)
    _results(root, req, job)
    if job.error is not None:
        summary = _add(root, "errorSummary", type="fatal" if job.phase == "ERROR" else "transient", hasDetail="true")
        _add(summary, "message", job.error)
    return root


def _xml(resp: falcon.Response, root: ET.Element) -> None:
    resp.content_type = "text/xml"
    resp.data = ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _release_connection(req: falcon.Request) -> None:
    """Give the request's pooled connection back while it waits; its next use takes one
    anew (database.Context)."""
    connection, req.context._connection = req.context._connection, None
    if connection is not None:
        connection.close()
