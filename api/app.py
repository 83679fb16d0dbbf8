"""The WSGI application: `gunicorn -c api/gunicorn.conf.py api.app:application`.

`create_app(config, engine, replica)` builds it from its dependencies, so that tests build
one on their own database; `application` is the one gunicorn serves, configured the usual way
(--config-less: $ARCHIVE_CONFIG, else /etc/archive-daemon/config.yaml; $ARCHIVE_DATABASE_URL,
$ARCHIVE_DATABASE_READ_URL), built when gunicorn first asks for it (so importing this module
needs no database).
"""

from __future__ import annotations

import logging

import falcon
import psycopg2
import psycopg2.errors
import sqlalchemy as sa

from archive_daemon import db
from archive_daemon.config import Config, load_config

from .auth import Authentication
from .calibrations import Calibrations
from .database import Connection, Request
from .facets import Facets
from .files import Download, File, Header
from .health import Health
from .ivoa import routes as ivoa
from .openapi import OpenApi
from .preview import Preview
from .proxy import FrontEnd
from .replica import Replica
from .search import Files
from .static import Page
from .streams import Streams, UnreadBodies
from .tarstream import TarDownload
from .whoami import WhoAmI

log = logging.getLogger("api")


def create_app(config: Config, engine: sa.Engine, replica: Replica | None = None, *,
               run_jobs: bool = False) -> falcon.App:
    """The API on the primary `engine`, reading from `replica` while it keeps up (api/database.py);
    with `run_jobs`, this process also runs asynchronous TAP jobs (gunicorn's workers do; an
    application built for a test need not)."""
    app = falcon.App(request_type=Request,
                     middleware=[UnreadBodies(), Connection(engine, replica), FrontEnd(config.api), Authentication(config.api)])
    app.req_options.auto_parse_qs_csv = False
    app.req_options.keep_blank_qs_values = True
    app.add_route("/api/v1/files", Files(config.api))
    app.add_route("/api/v1/files/{file_id}", File())
    app.add_route("/api/v1/files/{file_id}/header", Header())
    app.add_route("/api/v1/files/{file_id}/preview", Preview(config))
    streams = Streams(config.api)
    app.add_route("/api/v1/files/{file_id}/download", Download(config, streams))
    app.add_route("/api/v1/download", TarDownload(config, streams))
    app.add_route("/api/v1/facets", Facets(config.api))
    app.add_route("/api/v1/calibrations", Calibrations(config))
    app.add_route("/api/v1/whoami", WhoAmI())
    app.add_route("/api/v1/health", Health())
    app.add_route("/api/v1/openapi.json", OpenApi(config.api))
    ivoa.add_routes(app, config, engine, streams, run_jobs)
    app.add_sink(Page(), prefix=r"/(?!api/)")  # the page; every path under /api/ is the API's
    app.add_error_handler(psycopg2.OperationalError, _database_unavailable)
    app.add_error_handler(sa.exc.OperationalError, _database_unavailable)
    app.add_error_handler(sa.exc.TimeoutError, _database_unavailable)  # every pooled connection busy
    app.add_error_handler(psycopg2.errors.QueryCanceled, _too_long)  # falcon picks the most specific
    return app


def _database_unavailable(req, resp, exc, params):
    # The details (host, port, user) are for the log, not for whoever asked.
    log.warning("database unavailable: %s", db.first_line(exc))
    raise falcon.HTTPServiceUnavailable(title="Database unavailable", retry_after=10,
                                        description="the archive's database does not answer; try again shortly")


def _too_long(req, resp, exc, params):
    raise falcon.HTTPServiceUnavailable(
        title="Search took too long",
        description="the query ran past api.statement_timeout: narrow it (a smaller cone, a time range, "
                    "an exact or prefix object match)")


def _from_environment() -> falcon.App:
    from archive_daemon.commands.database import database_url
    config = load_config()
    engine = _pool(config, database_url(config))
    replica = None
    if config.database_read_url:
        # A replica that does not answer within seconds, host gone or not, is as good as down:
        # its reads go to the primary (api/replica.py).
        replica = Replica(_pool(config, config.database_read_url, connect_timeout=3, tcp_user_timeout=3000),
                          engine, config.max_replica_lag)
    return create_app(config, engine, replica, run_jobs=True)


def _pool(config: Config, url: str, **connect_args) -> sa.Engine:
    # A fixed pool per worker process and database, so that workers x db_pool_size is what
    # the API can ever hold of each server's max_connections (docs/api.md); a request
    # finding every connection busy waits a little, then gets a 503.
    timeout_ms = max(1, round(config.api.statement_timeout * 1000))
    return sa.create_engine(db.driver_url(url), pool_size=config.api.db_pool_size,
                            max_overflow=0, pool_timeout=10, pool_pre_ping=True,
                            connect_args={"options": f"-c statement_timeout={timeout_ms}", **connect_args})


def __getattr__(name: str):
    if name == "application":
        global application
        application = _from_environment()
        return application
    raise AttributeError(name)
