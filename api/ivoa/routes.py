"""Where each IVOA service answers, under /ivoa/ (docs/ivoa.md lists them for researchers)."""

from __future__ import annotations

import falcon
import sqlalchemy as sa

from archive_daemon.config import Config

from ..streams import Streams
from . import executor, scs, sia, tap, uws, vosi

TAP = "/ivoa/tap"


def add_routes(app: falcon.App, config: Config, engine: sa.Engine, streams: Streams, run_jobs: bool) -> None:
    """TAP (sync, async jobs, VOSI), Simple Cone Search and SIAv2; with `run_jobs`, this
    process also runs asynchronous jobs (gunicorn's workers do; a test's application need not)."""
    app.add_route("/ivoa/scs", scs.ConeSearch(config))
    app.add_route(f"{sia.BASE}/query", sia.Sia2Query(config))
    app.add_route(f"{sia.BASE}/capabilities", vosi.Capabilities(sia.BASE, {sia.QUERY_STANDARD: ("query", "2.0")}))
    app.add_route(f"{sia.BASE}/availability", vosi.Availability())
    app.add_route(f"{TAP}/sync", tap.Sync(config))
    app.add_route(f"{TAP}/capabilities", tap.Capabilities(config))
    app.add_route(f"{TAP}/availability", vosi.Availability())
    app.add_route(f"{TAP}/tables", tap.Tables())
    app.add_route(f"{TAP}/tables/{{table_name}}", tap.Tables(), suffix="table")
    jobs = executor.Service(config, engine)
    if run_jobs:
        jobs.start()
    uws.add_routes(app, config, jobs, streams)
